package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// onNodes puts web's replicas on a cluster: green's two on node-a and
// node-b, blue's standby on node-a and a second, exited one on node-b.
func onNodes(f *fixture) {
	svc := &f.ctl.services[0]
	svc.Colors[controller.Green] = controller.ColorView{Image: "app:v2", Containers: []controller.Container{
		{Name: "web-green-1", Node: "node-a", State: "running", Health: "healthy", StartedAt: testNow.Add(-12 * time.Minute)},
		{Name: "web-green-2", Node: "node-b", State: "running", Health: "unhealthy", StartedAt: testNow.Add(-12 * time.Minute)},
	}}
	svc.Colors[controller.Blue] = controller.ColorView{Image: "app:v1", Containers: []controller.Container{
		{Name: "web-blue-1", Node: "node-a", State: "running", Health: "healthy", StartedAt: testNow.Add(-3 * time.Hour)},
		{Name: "web-blue-2", Node: "node-b", State: "exited"},
	}}
}

// headers returns the column names of each container table of the card.
func headers(card []token) []string {
	var out []string
	for _, i := range elements(card, "table", "containers") {
		table := subtree(card, i)
		var cols []string
		for _, j := range elements(table, "th") {
			cols = append(cols, strings.TrimSpace(innerText(table, j)))
		}
		out = append(out, strings.Join(cols, ","))
	}
	return out
}

// nodeSummary returns the per-node items under the table of color, by
// their text.
func nodeSummary(card []token, color controller.Color) []string {
	var out []string
	for _, i := range elements(card, "div", "color-block") {
		if card[i].attrs["data-color"] != string(color) {
			continue
		}
		block := subtree(card, i)
		for _, j := range elements(block, "li", "node-count") {
			out = append(out, strings.Join(strings.Fields(innerText(block, j)), " "))
		}
	}
	return out
}

func TestCard_SingleHostShowsNoNodeColumnOrSummary(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	for _, got := range headers(card) {
		if want := "Name,State,Health,Uptime"; got != want {
			t.Errorf("columns = %s, want %s", got, want)
		}
	}
	if n := len(elements(card, "td", "c-node")) + len(elements(card, "div", "node-summary")); n != 0 {
		t.Errorf("node cells and summaries = %d, want none on a single host", n)
	}
}

// On a cluster each row names its node, and each color says per node how
// many replicas run and how they are, in words.
func TestCard_ReplicasOnNodesShowTheirNodeAndAPerNodeSummary(t *testing.T) {
	f := newFixture(t)
	onNodes(f)
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")

	if got := headers(card); len(got) != 2 || got[0] != "Name,Node,State,Health,Uptime" || got[1] != got[0] {
		t.Errorf("columns = %q, want Name,Node,State,Health,Uptime in both tables", got)
	}
	var nodes []string
	for _, i := range elements(card, "td", "c-node") {
		nodes = append(nodes, strings.TrimSpace(innerText(card, i)))
	}
	if got, want := strings.Join(nodes, ","), "node-a,node-b,node-a,node-b"; got != want {
		t.Errorf("node cells = %s, want %s", got, want)
	}

	tests := []struct {
		color controller.Color
		want  []string
	}{
		{controller.Green, []string{"node-a: 1 running, 1 healthy", "node-b: 1 running, 1 unhealthy"}},
		{controller.Blue, []string{"node-a: 1 running, 1 healthy", "node-b: 0 of 1 running"}},
	}
	for _, tt := range tests {
		if got := nodeSummary(card, tt.color); strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%s per node = %q, want %q", tt.color, got, tt.want)
		}
	}
	// A node with a replica down or unhealthy is marked for the warning
	// color; the words above already say it.
	for _, i := range elements(card, "li", "node-count") {
		degraded := card[i].attrs["data-state"] == "degraded"
		text := innerText(card, i)
		if want := strings.Contains(text, " of ") || strings.Contains(text, "unhealthy"); degraded != want {
			t.Errorf("%q data-state degraded = %v, want %v", text, degraded, want)
		}
	}
	// The list is named by its color's heading and its visible label.
	for _, i := range elements(card, "ul") {
		if got, want := card[i].attrs["aria-labelledby"], "containers-web-"; !strings.HasPrefix(got, want) {
			t.Errorf("summary list aria-labelledby = %q, want the color heading first", got)
		}
		for _, id := range strings.Fields(card[i].attrs["aria-labelledby"]) {
			if !hasID(card, id) {
				t.Errorf("summary list is labelled by #%s, which is not on the card", id)
			}
		}
	}
}

// All replicas on one node: the column says which, a summary would only
// repeat it.
func TestCard_OneNodeShowsTheColumnWithoutASummary(t *testing.T) {
	f := newFixture(t)
	onNodes(f)
	for _, col := range []controller.Color{controller.Green, controller.Blue} {
		for i := range f.ctl.services[0].Colors[col].Containers {
			f.ctl.services[0].Colors[col].Containers[i].Node = "node-a"
		}
	}
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	if n := len(elements(card, "td", "c-node")); n != 4 {
		t.Errorf("node cells = %d, want 4", n)
	}
	if n := len(elements(card, "div", "node-summary")); n != 0 {
		t.Errorf("summaries = %d, want none when every replica is on one node", n)
	}
}

// A color with no containers keeps its one empty row across every column,
// and a replica not placed yet shows a muted dash for its node.
func TestCard_NodeColumnKeepsEmptyRowsAndUnplacedReplicasReadable(t *testing.T) {
	f := newFixture(t)
	api := &f.ctl.services[1]
	api.Colors[controller.Blue] = controller.ColorView{Image: "api:v7", Containers: []controller.Container{
		{Name: "api-blue-1", Node: "node-a", State: "running", Health: "healthy", StartedAt: testNow.Add(-2 * time.Hour)},
		{Name: "api-blue-2", State: "created"},
	}}
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "api")
	if got := one(t, card, "td", "empty").attrs["colspan"]; got != "5" {
		t.Errorf("empty row colspan = %q, want 5 with the node column", got)
	}
	cells := elements(card, "td", "c-node")
	if len(cells) != 2 {
		t.Fatalf("node cells = %d, want 2", len(cells))
	}
	unplaced := subtree(card, cells[1])
	if got := strings.TrimSpace(innerText(unplaced, 0)); got != "—" || len(elements(unplaced, "span", "missing")) != 1 {
		t.Errorf("unplaced replica's node = %q, want a muted —", got)
	}
}

// Node names come from the cluster: they are text, in cells, attributes
// and the summary alike.
func TestCard_NodeNamesAreEscaped(t *testing.T) {
	const hostile = `x"><script>alert(1)</script>`
	f := newFixture(t)
	onNodes(f)
	f.ctl.services[0].Colors[controller.Green].Containers[1].Node = hostile
	s := f.session(auth.RoleOperator)
	for _, path := range []string{"/", "/partials/services/web"} {
		body := f.page(t, path, &s, http.StatusOK)
		assertInert(t, path, body)
		if strings.Contains(body, "<script>alert") {
			t.Errorf("%s: raw node name in the page", path)
		}
		card := cardTokens(t, tokenize(t, body), "web")
		found := false
		for _, i := range elements(card, "li", "node-count") {
			if card[i].attrs["data-node"] == hostile {
				found = true
				if got := oneText(t, subtree(card, i), "span", "node-name"); got != hostile {
					t.Errorf("%s: summary names the node %q, want the literal text", path, got)
				}
			}
		}
		if !found {
			t.Errorf("%s: no summary item for the hostile node", path)
		}
	}
}

func TestNodeCount_SaysWhatRunsAndHowHealthy(t *testing.T) {
	tests := []struct {
		n    nodeCount
		want string
	}{
		{nodeCount{Total: 2, Running: 2, Healthy: 1}, "2 running, 1 healthy"},
		{nodeCount{Total: 1, Running: 1}, "1 running"},
		{nodeCount{Total: 3, Running: 1, Healthy: 1, Unhealthy: 0}, "1 of 3 running, 1 healthy"},
		{nodeCount{Total: 2, Running: 2, Unhealthy: 2}, "2 running, 2 unhealthy"},
		{nodeCount{Total: 1}, "0 of 1 running"},
	}
	for _, tt := range tests {
		if got := tt.n.Text(); got != tt.want {
			t.Errorf("%+v says %q, want %q", tt.n, got, tt.want)
		}
	}
}
