package web

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/deployd/deployd/pkg/controller"
)

// On a cluster runtime each replica runs on a node; the card then names
// each replica's node and, when a service's replicas span nodes, sums up
// each color per node so that a node in trouble shows at a glance. A
// single host reports no nodes and its card stays as it was.

// nodeCount is how one color's replicas fare on one node.
type nodeCount struct {
	Node      string
	Total     int
	Running   int
	Healthy   int
	Unhealthy int
}

// Degraded reports whether some of the node's replicas are down or fail
// their probes: the summary marks the node for the eye.
func (n nodeCount) Degraded() bool { return n.Running < n.Total || n.Unhealthy > 0 }

// Text is the node's part of the summary: "2 running, 1 healthy", or
// "1 of 2 running" when some are not, so a short count is never mistaken
// for the whole.
func (n nodeCount) Text() string {
	parts := []string{fmt.Sprintf("%d running", n.Running)}
	if n.Running < n.Total {
		parts[0] = fmt.Sprintf("%d of %d running", n.Running, n.Total)
	}
	if n.Healthy > 0 {
		parts = append(parts, fmt.Sprintf("%d healthy", n.Healthy))
	}
	if n.Unhealthy > 0 {
		parts = append(parts, fmt.Sprintf("%d unhealthy", n.Unhealthy))
	}
	return strings.Join(parts, ", ")
}

// serviceNodes counts the distinct nodes the service's containers run
// on, in both colors, set or not.
func serviceNodes(v controller.ServiceView) int {
	nodes := map[string]bool{}
	for _, cv := range v.Colors {
		for _, cs := range [][]controller.Container{cv.Containers, cv.Others} {
			for _, c := range cs {
				if c.Node != "" {
					nodes[c.Node] = true
				}
			}
		}
	}
	return len(nodes)
}

// perNode counts a color table's rows (its set and the others beside it,
// as the table lists them) by node, sorted by node name. A replica not
// placed on a node yet is left out: its row shows it without one.
func perNode(tables ...[]controller.Container) []nodeCount {
	byNode := map[string]*nodeCount{}
	for _, cs := range tables {
		for _, c := range cs {
			if c.Node == "" {
				continue
			}
			n := byNode[c.Node]
			if n == nil {
				n = &nodeCount{Node: c.Node}
				byNode[c.Node] = n
			}
			n.Total++
			if c.Running() {
				n.Running++
			}
			switch c.Health {
			case controller.HealthHealthy:
				n.Healthy++
			case controller.HealthUnhealthy:
				n.Unhealthy++
			}
		}
	}
	out := make([]nodeCount, 0, len(byNode))
	for _, n := range byNode {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b nodeCount) int { return cmp.Compare(a.Node, b.Node) })
	return out
}
