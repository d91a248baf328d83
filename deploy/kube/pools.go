package kube

import (
	"fmt"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Pools maps the reference system's compute pools onto a cluster's nodes:
// each instance family to the labels and taints of the nodes that provide
// it, and each pool to its family. A file of them reads:
//
//	instanceFamilies:
//	  GPU_NV_S:
//	    nodeSelector: {node.kubernetes.io/instance-type: g5.2xlarge}
//	    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
//	    gpusPerNode: 1
//	computePools:
//	  my_gpu_pool: GPU_NV_S
type Pools struct {
	InstanceFamilies map[string]Family `json:"instanceFamilies"`
	ComputePools     map[string]string `json:"computePools,omitempty"`
}

// Family is one kind of node.
type Family struct {
	NodeSelector map[string]string   `json:"nodeSelector,omitempty"`
	Tolerations  []corev1.Toleration `json:"tolerations,omitempty"`
	// GPUsPerNode bounds what one instance may ask for; 0 for CPU nodes.
	GPUsPerNode int `json:"gpusPerNode,omitempty"`
}

// ReadPools reads a pools file; unknown fields are errors.
func ReadPools(path string) (*Pools, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Pools
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(p.InstanceFamilies) == 0 {
		return nil, fmt.Errorf("%s names no instanceFamilies", path)
	}
	for pool, family := range p.ComputePools {
		if _, ok := p.family(family); !ok {
			return nil, fmt.Errorf("%s: compute pool %s is of family %s, which instanceFamilies does not describe", path, pool, family)
		}
	}
	return &p, nil
}

// Lookup finds a pool's family: a pool named in computePools, or a family
// named directly. Names match case-insensitively, as SQL names do.
func (p *Pools) Lookup(pool string) (Family, string, error) {
	for name, family := range p.ComputePools {
		if strings.EqualFold(name, pool) {
			f, _ := p.family(family)
			return f, strings.ToUpper(family), nil
		}
	}
	if f, ok := p.family(pool); ok {
		return f, strings.ToUpper(pool), nil
	}
	var known []string
	for name := range p.ComputePools {
		known = append(known, name)
	}
	for name := range p.InstanceFamilies {
		known = append(known, name)
	}
	slices.Sort(known)
	return Family{}, "", fmt.Errorf("no compute pool or instance family %q in the pools file (it has %s)", pool, strings.Join(known, ", "))
}

func (p *Pools) family(name string) (Family, bool) {
	for n, f := range p.InstanceFamilies {
		if strings.EqualFold(n, name) {
			return f, true
		}
	}
	return Family{}, false
}
