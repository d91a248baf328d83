// Package bind puts the values a caller sends onto a function's input
// tensors, with one set of rules for every front (the HTTP decoder, the
// batch job's file readers): which name or position fills which input or
// feature column, how a value converts to the input's element type (whole
// numbers for integers, within range; numbers written as text; null only
// as NaN where a function asks for it), how an array's shape fills an
// input's row, and the error that names the row and the column at fault.
package bind
