// Package batchjob runs a model over a file of rows — CSV, JSON Lines or
// Parquet — a chunk at a time, through the same admission queue and workers
// as the server, into an output file that keeps each row's id. Finished
// chunks are kept on disk, so an interrupted run resumes where it stopped.
package batchjob
