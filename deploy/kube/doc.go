// Package kube renders service and job specs as Kubernetes manifests, built
// with the k8s.io/api types: a Deployment, Service, Ingress, autoscaler and
// disruption budget for a service, a Job for a job.
package kube
