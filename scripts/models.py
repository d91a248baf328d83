#!/usr/bin/python3
"""Generates the ONNX models modelserve ships, tests and benchmarks with.

Usage: /usr/bin/python3 scripts/models.py OUTDIR [NAME ...]

Needs Debian's python3-onnx and python3-numpy (hence /usr/bin/python3). Every
model is built with onnx.helper from fixed seeds, so the same script writes
the same bytes on every machine; nothing large is committed.
"""

import csv
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = "batch"


def model(nodes, inputs, outputs, inits, name, doc="", meta=None):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=OPSET, producer_name="modelserve-models",
                          doc_string=doc)
    m.ir_version = 8
    for k, v in (meta or {}).items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m)
    return m


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def iris(steps=3000):
    """Softmax regression trained on Fisher's iris data (examples/iris/iris.csv)."""
    path = os.path.join(HERE, "..", "examples", "iris", "iris.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    classes = ["setosa", "versicolor", "virginica"]
    feats = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    x = np.array([[float(r[k]) for k in feats] for r in rows])
    y = np.array([classes.index(r["species"]) for r in rows])
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    onehot = np.eye(3)[y]
    w = np.zeros((4, 3))
    b = np.zeros(3)
    # Plain full-batch gradient descent: deterministic, and enough for iris.
    for _ in range(steps):
        logits = z @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = p - onehot
        w -= 0.5 * (z.T @ grad / len(z) + 1e-3 * w)
        b -= 0.5 * grad.mean(axis=0)
    accuracy = float(((z @ w + b).argmax(axis=1) == y).mean())
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centered"]),
        helper.make_node("Div", ["centered", "std"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weights"], ["xw"]),
        helper.make_node("Add", ["xw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    inits = [const("mean", mean.astype(np.float32)), const("std", std.astype(np.float32)),
             const("weights", w.astype(np.float32)), const("bias", b.astype(np.float32))]
    return model(nodes, [vi("features", TensorProto.FLOAT, [BATCH, 4])],
                 [vi("label", TensorProto.INT64, [BATCH]),
                  vi("probabilities", TensorProto.FLOAT, [BATCH, 3])],
                 inits, "iris",
                 doc="Softmax regression on Fisher's iris data; label is the class index.",
                 meta={"classes": ",".join(classes), "features": ",".join(feats),
                       "training_accuracy": "%.4f" % accuracy})


def iris_early():
    """Iris stopped after 8 steps: a second version with other weights, whose
    labels differ on some rows (replay's test)."""
    return iris(steps=8)


def mlp():
    """A 64-256-256-8 ReLU MLP with seeded random weights (benchmarks)."""
    rng = np.random.default_rng(7)
    sizes = [64, 256, 256, 8]
    nodes, inits, prev = [], [], "x"
    for i in range(3):
        w = (rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])).astype(np.float32)
        inits += [const("w%d" % i, w), const("b%d" % i, np.zeros(sizes[i + 1], np.float32))]
        nodes += [helper.make_node("MatMul", [prev, "w%d" % i], ["mm%d" % i]),
                  helper.make_node("Add", ["mm%d" % i, "b%d" % i], ["h%d" % i if i < 2 else "y"])]
        if i < 2:
            nodes.append(helper.make_node("Relu", ["h%d" % i], ["r%d" % i]))
            prev = "r%d" % i
    return model(nodes, [vi("x", TensorProto.FLOAT, [BATCH, 64])],
                 [vi("y", TensorProto.FLOAT, [BATCH, 8])], inits, "mlp")


def encoder(layers=4, d=256, heads=4, ff=1024, seq=32, vocab=8000):
    """A BERT-style transformer encoder (about 5 M parameters) that mean-pools
    token states into one embedding per row (benchmarks)."""
    rng = np.random.default_rng(11)
    hd = d // heads
    nodes, inits = [], []

    def weight(name, *shape):
        inits.append(const(name, (rng.standard_normal(shape) * 0.02).astype(np.float32)))
        return name

    def ones(name, n):
        inits.append(const(name, np.ones(n, np.float32)))
        return name

    def zeros(name, n):
        inits.append(const(name, np.zeros(n, np.float32)))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    inits += [const("split_heads", np.array([0, seq, heads, hd], np.int64)),
              const("merge_heads", np.array([0, seq, d], np.int64)),
              const("scale", np.array(1.0 / np.sqrt(hd), np.float32)),
              const("sqrt2", np.array(np.sqrt(2.0), np.float32)),
              const("one", np.array(1.0, np.float32)),
              const("half", np.array(0.5, np.float32))]
    h = node("Gather", [weight("tok_emb", vocab, d), "input_ids"], "tok", axis=0)
    h = node("Add", [h, weight("pos_emb", seq, d)], "emb")
    for i in range(layers):
        p = "l%d_" % i
        x = node("LayerNormalization", [h, ones(p + "ln1_g", d), zeros(p + "ln1_b", d)], p + "ln1", axis=-1)

        def heads_of(kind):
            t = node("MatMul", [x, weight(p + "w" + kind, d, d)], p + kind)
            t = node("Reshape", [t, "split_heads"], p + kind + "_r")
            return node("Transpose", [t], p + kind + "_t", perm=[0, 2, 1, 3])

        q, k, v = heads_of("q"), heads_of("k"), heads_of("v")
        kt = node("Transpose", [k], p + "kt", perm=[0, 1, 3, 2])
        s = node("MatMul", [q, kt], p + "scores")
        s = node("Mul", [s, "scale"], p + "scaled")
        a = node("Softmax", [s], p + "attn", axis=-1)
        c = node("MatMul", [a, v], p + "ctx")
        c = node("Transpose", [c], p + "ctx_t", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, "merge_heads"], p + "ctx_m")
        c = node("MatMul", [c, weight(p + "wo", d, d)], p + "attn_out")
        h = node("Add", [h, c], p + "res1")
        x = node("LayerNormalization", [h, ones(p + "ln2_g", d), zeros(p + "ln2_b", d)], p + "ln2", axis=-1)
        f = node("MatMul", [x, weight(p + "w1", d, ff)], p + "ff1")
        f = node("Add", [f, zeros(p + "b1", ff)], p + "ff1b")
        # GELU(x) = 0.5 x (1 + erf(x / sqrt 2))
        g = node("Div", [f, "sqrt2"], p + "g_div")
        g = node("Erf", [g], p + "g_erf")
        g = node("Add", [g, "one"], p + "g_add")
        g = node("Mul", [f, g], p + "g_mul")
        g = node("Mul", [g, "half"], p + "gelu")
        f = node("MatMul", [g, weight(p + "w2", ff, d)], p + "ff2")
        f = node("Add", [f, zeros(p + "b2", d)], p + "ff2b")
        h = node("Add", [h, f], p + "res2")
    h = node("LayerNormalization", [h, ones("lnf_g", d), zeros("lnf_b", d)], "lnf", axis=-1)
    node("ReduceMean", [h], "embedding", axes=[1], keepdims=0)
    return model(nodes, [vi("input_ids", TensorProto.INT64, [BATCH, seq])],
                 [vi("embedding", TensorProto.FLOAT, [BATCH, d])], inits, "encoder")


DENSE, SPARSE, EMB_DIM, VOCAB = 13, 26, 16, 1000


def dlrm():
    """A DLRM-like recommender: 13 dense features through a small MLP, 26
    categorical ids looked up in 26 embedding tables, all concatenated into
    an MLP that gives a click probability. Many small operators: per row it
    runs far faster in batches than one row at a time (benchmarks)."""
    rng = np.random.default_rng(13)
    nodes, inits = [], []

    def weight(name, *shape):
        w = (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
        inits.append(const(name, w))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    x = node("MatMul", ["dense", weight("bottom_w", DENSE, 64)], "bottom_mm")
    x = node("Relu", [x], "bottom")
    parts = [x]
    for i in range(SPARSE):
        inits.append(const("col%d" % i, np.array(i, np.int64)))
        ids = node("Gather", ["sparse", "col%d" % i], "ids%d" % i, axis=1)
        table = (rng.standard_normal((VOCAB, EMB_DIM)) * 0.1).astype(np.float32)
        inits.append(const("table%d" % i, table))
        parts.append(node("Gather", ["table%d" % i, ids], "emb%d" % i, axis=0))
    h = node("Concat", parts, "features", axis=1)
    width = 64 + SPARSE * EMB_DIM
    for i, (a, b) in enumerate([(width, 256), (256, 128)]):
        h = node("MatMul", [h, weight("top_w%d" % i, a, b)], "top_mm%d" % i)
        h = node("Relu", [h], "top%d" % i)
    h = node("MatMul", [h, weight("out_w", 128, 1)], "logit")
    node("Sigmoid", [h], "probability")
    return model(nodes, [vi("dense", TensorProto.FLOAT, [BATCH, DENSE]),
                         vi("sparse", TensorProto.INT64, [BATCH, SPARSE])],
                 [vi("probability", TensorProto.FLOAT, [BATCH, 1])], inits, "dlrm")


def ceiling():
    """The DLRM's inputs and almost no work: the mean of the dense features.
    What a server answers with it is the most its wire path can carry."""
    nodes = [helper.make_node("ReduceMean", ["dense"], ["mean"], axes=[1], keepdims=0)]
    return model(nodes, [vi("dense", TensorProto.FLOAT, [BATCH, DENSE]),
                         vi("sparse", TensorProto.INT64, [BATCH, SPARSE])],
                 [vi("mean", TensorProto.FLOAT, [BATCH])], [], "ceiling")


def strings():
    """String in, string and numbers out: normalizes a colour name, encodes it,
    and scales an amount by the code."""
    nodes = [
        helper.make_node("StringNormalizer", ["color"], ["normalized"],
                         case_change_action="LOWER", locale="C.UTF-8"),
        helper.make_node("LabelEncoder", ["normalized"], ["code"], domain="ai.onnx.ml",
                         keys_strings=["red", "green", "blue"], values_int64s=[1, 2, 3],
                         default_int64=0),
        helper.make_node("Cast", ["code"], ["code_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["amount", "code_f"], ["score"]),
    ]
    return model(nodes, [vi("color", TensorProto.STRING, [BATCH]),
                         vi("amount", TensorProto.FLOAT, [BATCH])],
                 [vi("normalized", TensorProto.STRING, [BATCH]),
                  vi("code", TensorProto.INT64, [BATCH]),
                  vi("score", TensorProto.FLOAT, [BATCH])], [], "strings")


def vectors():
    """A vector input beside a scalar one; outputs of one value per row ([N,1]),
    a vector and an index."""
    nodes = [
        helper.make_node("Mul", ["embedding", "embedding"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axis1"], ["sumsq"], keepdims=1),
        helper.make_node("Sqrt", ["sumsq"], ["norm"]),
        helper.make_node("Unsqueeze", ["weight", "axis1"], ["weight_col"]),
        helper.make_node("Mul", ["embedding", "weight_col"], ["scaled"]),
        helper.make_node("ArgMax", ["embedding"], ["top"], axis=1, keepdims=0),
    ]
    return model(nodes, [vi("embedding", TensorProto.FLOAT, [BATCH, 8]),
                         vi("weight", TensorProto.FLOAT, [BATCH])],
                 [vi("norm", TensorProto.FLOAT, [BATCH, 1]),
                  vi("scaled", TensorProto.FLOAT, [BATCH, 8]),
                  vi("top", TensorProto.INT64, [BATCH])],
                 [const("axis1", np.array([1], np.int64))], "vectors")


def image():
    """An image-shaped input ([N,2,3,3]) and a nested output ([N,3,3])."""
    nodes = [
        helper.make_node("ReduceMax", ["pixels"], ["channel_max"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceSum", ["pixels", "axis1"], ["grid"], keepdims=0),
    ]
    return model(nodes, [vi("pixels", TensorProto.FLOAT, [BATCH, 2, 3, 3])],
                 [vi("channel_max", TensorProto.FLOAT, [BATCH, 2]),
                  vi("grid", TensorProto.FLOAT, [BATCH, 3, 3])],
                 [const("axis1", np.array([1], np.int64))], "image")


def types():
    """One input of each of int32, uint8, float64 and bool."""
    nodes = [
        helper.make_node("Cast", ["i32"], ["i32_d"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["u8"], ["u8_d"], to=TensorProto.DOUBLE),
        helper.make_node("Add", ["f64", "i32_d"], ["partial"]),
        helper.make_node("Add", ["partial", "u8_d"], ["sum"]),
        helper.make_node("Not", ["flag"], ["not_flag"]),
        helper.make_node("Cast", ["i32"], ["i32_l"], to=TensorProto.INT64),
        helper.make_node("Mul", ["i32_l", "two"], ["doubled"]),
    ]
    return model(nodes, [vi("i32", TensorProto.INT32, [BATCH]),
                         vi("u8", TensorProto.UINT8, [BATCH]),
                         vi("f64", TensorProto.DOUBLE, [BATCH]),
                         vi("flag", TensorProto.BOOL, [BATCH])],
                 [vi("sum", TensorProto.DOUBLE, [BATCH]),
                  vi("not_flag", TensorProto.BOOL, [BATCH]),
                  vi("doubled", TensorProto.INT64, [BATCH])],
                 [const("two", np.array(2, np.int64))], "types")


def fixed():
    """A batch dimension fixed at 1: the server must run it row by row."""
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    return model(nodes, [vi("x", TensorProto.FLOAT, [1, 4])],
                 [vi("y", TensorProto.FLOAT, [1, 2])], [const("w", w)], "fixed")


def sequence():
    """A dynamic sequence length: counts the non-zero tokens of each row."""
    nodes = [
        helper.make_node("Cast", ["tokens"], ["nz"], to=TensorProto.BOOL),
        helper.make_node("Cast", ["nz"], ["nz_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["nz_i", "axis1"], ["count"], keepdims=0),
    ]
    return model(nodes, [vi("tokens", TensorProto.INT64, [BATCH, "seq"])],
                 [vi("count", TensorProto.INT64, [BATCH])],
                 [const("axis1", np.array([1], np.int64))], "sequence")


def fragile():
    """Reshapes each batch into pairs: ONNX Runtime fails when a batch holds
    an odd number of values, and the output loses the batch's row count when
    rows are not pairs (tests of model failures)."""
    nodes = [helper.make_node("Reshape", ["x", "pair"], ["pairs"])]
    return model(nodes, [vi("x", TensorProto.FLOAT, [BATCH, "width"])],
                 [vi("pairs", TensorProto.FLOAT, [BATCH, 2])],
                 [const("pair", np.array([-1, 2], np.int64))], "fragile")


def half():
    """Half precision in and out: doubles a float16 vector, and sums it in
    float32."""
    nodes = [
        helper.make_node("Add", ["x", "x"], ["doubled"]),
        helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["x32", "axis1"], ["total"], keepdims=0),
    ]
    return model(nodes, [vi("x", TensorProto.FLOAT16, [BATCH, 3])],
                 [vi("doubled", TensorProto.FLOAT16, [BATCH, 3]),
                  vi("total", TensorProto.FLOAT, [BATCH])],
                 [const("axis1", np.array([1], np.int64))], "half")


MODELS = {f.__name__: f for f in (iris, iris_early, mlp, encoder, dlrm, ceiling, strings, vectors, image, types, fixed,
                                   sequence, fragile, half)}


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: models.py OUTDIR [%s ...]" % " | ".join(MODELS))
    out, names = argv[1], argv[2:] or list(MODELS)
    os.makedirs(out, exist_ok=True)
    for name in names:
        if name not in MODELS:
            sys.exit("models.py: unknown model %r (have: %s)" % (name, ", ".join(MODELS)))
        path = os.path.join(out, name + ".onnx")
        tmp = path + ".tmp%d" % os.getpid()
        onnx.save(MODELS[name](), tmp)
        os.replace(tmp, path)
        print(path)


if __name__ == "__main__":
    main(sys.argv)
