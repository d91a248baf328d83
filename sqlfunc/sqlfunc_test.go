package sqlfunc

import (
	"strings"
	"testing"

	"github.com/modelserve/modelserve/model"
)

func irisSignature() model.Signature {
	return model.Signature{
		Inputs:  []model.Spec{{Name: "features", DType: model.Float32, Shape: model.Shape{-1, 4}}},
		Outputs: []model.Spec{{Name: "label", DType: model.Int64, Shape: model.Shape{-1}}, {Name: "probabilities", DType: model.Float32, Shape: model.Shape{-1, 3}}},
		Functions: []model.Function{
			{Name: "predict", Outputs: []string{"label"}},
			{Name: "predict_proba", Outputs: []string{"probabilities"}},
		},
		Features: map[string][]string{"features": {"sepal_length", "sepal_width", "petal_length", "petal width"}},
	}
}

func TestCreate_oneFunctionPerModelFunction(t *testing.T) {
	got, err := Create(irisSignature(), Options{
		Service: "ml.serving.iris_svc", Endpoint: "inference", MaxBatchRows: 64,
		ContextHeaders: []string{"current_user"}, MaxBatchRetries: 5, OnBatchFailure: "return_null", BatchTimeoutSecs: 600,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `CREATE OR REPLACE FUNCTION ml.serving.IRIS_SVC_PREDICT_PROBA(sepal_length FLOAT, sepal_width FLOAT, petal_length FLOAT, "petal width" FLOAT)
  RETURNS OBJECT
  SERVICE = ml.serving.iris_svc
  ENDPOINT = inference
  MAX_BATCH_ROWS = 64
  CONTEXT_HEADERS = (CURRENT_USER)
  MAX_BATCH_RETRIES = 5
  ON_BATCH_FAILURE = RETURN_NULL
  BATCH_TIMEOUT_SECS = 600
  AS '/predict-proba';
`
	if len(got) != 2 || got[1] != want {
		t.Errorf("got %d statements; the second:\n%s\nwant:\n%s", len(got), got[1], want)
	}
	if !strings.Contains(got[0], "IRIS_SVC_PREDICT(") || !strings.Contains(got[0], "AS '/predict';") {
		t.Errorf("the first:\n%s", got[0])
	}
}

func TestCreate_pathsNameTheModel(t *testing.T) {
	got, err := Create(irisSignature(), Options{Service: "svc", Endpoint: "inference", MaxBatchRows: 64, Model: "iris"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"AS '/iris/predict';", "AS '/iris/predict-proba';"} {
		if !strings.Contains(got[i], want) {
			t.Errorf("statement %d lacks %s:\n%s", i, want, got[i])
		}
	}
}

func TestCreate_namesCarryTheModelWhenAsked(t *testing.T) {
	got, err := Create(irisSignature(), Options{Service: "ml.svc", Endpoint: "inference", Model: "iris-v2", NameModel: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got[0], `CREATE OR REPLACE FUNCTION ml."SVC_IRIS-V2_PREDICT"(`) {
		t.Errorf("the first:\n%s", got[0])
	}
	if _, err := Create(irisSignature(), Options{Service: "svc", Endpoint: "inference", NameModel: true}); err == nil {
		t.Error("naming after a model with no model name given")
	}
}

func TestCreate_typesAndWideRows(t *testing.T) {
	sig := model.Signature{
		Inputs: []model.Spec{
			{Name: "text", DType: model.String, Shape: model.Shape{-1}},
			{Name: "count", DType: model.Int64, Shape: model.Shape{-1}},
			{Name: "flag", DType: model.Bool, Shape: model.Shape{-1}},
			{Name: "embedding", DType: model.Float32, Shape: model.Shape{-1, 2, 8}},
		},
		Outputs:   []model.Spec{{Name: "y", DType: model.Float32, Shape: model.Shape{-1}}},
		Functions: []model.Function{{Name: "score", Outputs: []string{"y"}}},
	}
	got, err := Create(sig, Options{Service: "svc", Endpoint: "inference"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got[0], "SVC_SCORE(text VARCHAR, count NUMBER, flag BOOLEAN, embedding ARRAY)") {
		t.Errorf("arguments:\n%s", got[0])
	}
	if strings.Contains(got[0], "MAX_BATCH_ROWS") {
		t.Errorf("no batch rows given, none written:\n%s", got[0])
	}
	wide, _ := Create(sig, Options{Service: "svc", Endpoint: "inference", Wide: true})
	if !strings.Contains(wide[0], "SVC_SCORE(INPUT OBJECT)") {
		t.Errorf("wide:\n%s", wide[0])
	}
	// More arguments than SQL allows: wide, whatever was asked.
	many := model.Signature{
		Inputs:    []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{-1, 600}}},
		Outputs:   sig.Outputs,
		Functions: sig.Functions,
	}
	got, _ = Create(many, Options{Service: "svc", Endpoint: "inference"})
	if !strings.Contains(got[0], "(INPUT OBJECT)") {
		t.Errorf("600 arguments:\n%.200s", got[0])
	}
}

func TestOptions_validate(t *testing.T) {
	for _, o := range []Options{
		{Endpoint: "inference"},
		{Service: "svc", Endpoint: "inference", OnBatchFailure: "retry"},
		{Service: "svc", Endpoint: "inference", ContextHeaders: []string{"current user"}},
		{Service: "svc", Endpoint: "inference", MaxBatchRows: -1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v was accepted", o)
		}
	}
}

func TestIdentifier(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "ABC_1": "ABC_1", "a b": `"a b"`, `say "hi"`: `"say ""hi"""`, "1x": `"1x"`} {
		if got := Identifier(in); got != want {
			t.Errorf("Identifier(%q) = %s, want %s", in, got, want)
		}
	}
}
