// Package model holds the types every stage of the data path shares: a
// model's signature (inputs, outputs, functions and the SQL arguments they
// imply) and the typed tensors a batch carries from the server to a worker.
package model
