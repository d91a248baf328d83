// Package deploy holds what sits beside the serving path: service and job
// specs (spec), running them on this machine (local), batch inference over
// files (batchjob), and rendering them for a cluster. Nothing here is on a
// request's path.
package deploy
