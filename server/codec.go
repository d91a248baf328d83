package server

import (
	"fmt"

	"github.com/modelserve/modelserve/model"
)

// Codec reads request bodies into input tensors and writes outputs back,
// exactly as the server does, for one of a model's functions: tools (the
// bench, batch jobs) use it to measure or reuse the wire format.
type Codec struct {
	fn  model.Function
	dec *decoder
	enc *encoder
}

// Decoded is a request body read into tensors.
type Decoded struct{ b *batch }

// Rows is the number of rows decoded.
func (d *Decoded) Rows() int { return len(d.b.rowIDs) }

// Inputs are the model's inputs, in the signature's order.
func (d *Decoded) Inputs() []model.Tensor { return d.b.inputs }

// NewCodec makes a codec for the named function of sig.
func NewCodec(sig model.Signature, function string) (*Codec, error) {
	if err := sig.Validate(); err != nil {
		return nil, err
	}
	fn, ok := sig.Function(function)
	if !ok {
		return nil, fmt.Errorf("the model has no function %q", function)
	}
	return &Codec{fn: fn, dec: newDecoder(sig), enc: newEncoder(fn, sig.FetchedOutputs())}, nil
}

// Decode reads a body in any request shape the server accepts.
func (c *Codec) Decode(body []byte) (*Decoded, error) {
	b, err := c.dec.decode(body, decodeOptions{nullAsNaN: c.fn.NullAsNaN})
	if err != nil {
		return nil, err
	}
	return &Decoded{b}, nil
}

// Release gives d's input memory back for the next Decode to reuse, as
// the server does once no call reads it; d's inputs must not be read
// after.
func (c *Codec) Release(d *Decoded) { c.dec.release(d.b) }

// Encode appends the answer for d's rows to dst; outputs follow the
// signature's FetchedOutputs.
func (c *Codec) Encode(dst []byte, d *Decoded, outputs []model.Tensor) []byte {
	return c.enc.encode(dst, d.b, outputs)
}
