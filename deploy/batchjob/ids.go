package batchjob

import (
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/model"
)

// Row ids travel as Parquet values whatever the file format: a Parquet id
// keeps its type; a CSV or JSON id that is a whole number becomes INT64,
// any other text a string.

// idFromText reads a CSV cell: a whole number written plainly is one;
// anything else ("007", "a-1") stays text.
func idFromText(s string) parquet.Value {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && strconv.FormatInt(n, 10) == s {
		return parquet.Int64Value(n)
	}
	return parquet.ByteArrayValue([]byte(s))
}

// idFromJSON reads a JSON value: numbers as numbers, strings as text,
// anything else as its JSON text.
func idFromJSON(raw []byte) parquet.Value {
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return parquet.NullValue()
	case raw[0] == '"':
		if s, err := strconv.Unquote(string(raw)); err == nil {
			return parquet.ByteArrayValue([]byte(s))
		}
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return parquet.Int64Value(n)
		}
		if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
			return parquet.DoubleValue(f)
		}
	case string(raw) == "true" || string(raw) == "false":
		return parquet.BooleanValue(raw[0] == 't')
	}
	return parquet.ByteArrayValue(raw)
}

// idText writes an id as text: for CSV cells, Parquet string columns and
// error messages.
func idText(v parquet.Value) string {
	return string(appendIDText(nil, v))
}

func appendIDText(dst []byte, v parquet.Value) []byte {
	if v.IsNull() {
		return dst
	}
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.AppendBool(dst, v.Boolean())
	case parquet.Int32:
		return strconv.AppendInt(dst, int64(v.Int32()), 10)
	case parquet.Int64:
		return strconv.AppendInt(dst, v.Int64(), 10)
	case parquet.Float:
		return strconv.AppendFloat(dst, float64(v.Float()), 'g', -1, 32)
	case parquet.Double:
		return strconv.AppendFloat(dst, v.Double(), 'g', -1, 64)
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return append(dst, v.ByteArray()...)
	}
	return append(dst, v.String()...)
}

// appendIDJSON writes an id as a JSON value.
func appendIDJSON(dst []byte, v parquet.Value) []byte {
	switch {
	case v.IsNull():
		return append(dst, "null"...)
	case v.Kind() == parquet.Float:
		return model.AppendJSONFloat(dst, float64(v.Float()), 32)
	case v.Kind() == parquet.Double:
		return model.AppendJSONFloat(dst, v.Double(), 64)
	case v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray:
		return model.AppendJSONString(dst, string(v.ByteArray()))
	}
	return appendIDText(dst, v)
}
