package monitoring

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The template variables the dashboard must have, besides datasource, and
// Grafana's built-ins its panels may use.
var (
	wantVariables = []string{"namespace", "pod", "server"}
	builtins      = []string{"__rate_interval"}
)

func loadDashboard(t *testing.T) Dashboard {
	t.Helper()
	d, err := LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDashboardPanels: unique ids, every query on the datasource variable,
// every query's variables defined, every variable used by some panel.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 39 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want both set and a current schema (>= 39)", d.UID, d.Title, d.SchemaVersion)
	}
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		if defined[v.Name] {
			t.Errorf("variable %s defined twice", v.Name)
		}
		defined[v.Name] = true
	}
	ids := map[int]string{}
	used := map[string]bool{}
	queries := 0
	for _, p := range d.AllPanels() {
		if prev, dup := ids[p.ID]; dup || p.ID <= 0 {
			t.Errorf("panel %q: id %d (already %q)", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d: title %q, %d queries", p.ID, p.Title, len(p.Targets))
		}
		checkDatasource(t, "panel "+p.Title, p.Datasource)
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			queries++
			checkDatasource(t, "panel "+p.Title+" query "+tg.RefID, tg.Datasource)
			if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" || tg.LegendFormat == "" {
				t.Errorf("panel %q: query %q: want a unique refId, an expr and a legend", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			for _, v := range VarRefs(tg.Expr) {
				used[v] = true
				if !defined[v] && !slices.Contains(builtins, v) {
					t.Errorf("panel %q: %s refers to $%s, which is not defined", p.Title, tg.RefID, v)
				}
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries", queries)
	}
	for _, name := range wantVariables {
		if !used[name] {
			t.Errorf("no panel uses $%s", name)
		}
	}
	for name := range defined {
		if name != "datasource" && !used[name] {
			t.Errorf("variable %s is used by no panel", name)
		}
	}
}

// checkDatasource: the reference must be the datasource variable.
func checkDatasource(t *testing.T, what string, ref *DatasourceRef) {
	t.Helper()
	if ref == nil || ref.Type != "prometheus" || ref.UID != "${datasource}" {
		t.Errorf("%s: datasource %+v, want {prometheus ${datasource}}", what, ref)
	}
}

// TestDashboardVariables: a Prometheus datasource variable, and namespace,
// pod and server as label_values queries on it, each narrowed by the ones
// before it, with All meaning any value.
func TestDashboardVariables(t *testing.T) {
	d := loadDashboard(t)
	var names []string
	for i, v := range d.Templating.List {
		names = append(names, v.Name)
		if i == 0 {
			if v.Name != "datasource" || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("first variable %s: type %s query %s, want the datasource variable of type prometheus", v.Name, v.Type, v.Query)
			}
			continue
		}
		checkDatasource(t, "variable "+v.Name, v.Datasource)
		sel, label, ok := LabelValues(v.VariableQuery())
		if !ok || label != v.Name || v.Type != "query" || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("variable %s: type %s query %q includeAll %v allValue %q: want label_values(..., %s), All = .*",
				v.Name, v.Type, v.VariableQuery(), v.IncludeAll, v.AllValue, v.Name)
		}
		if v.Definition != v.VariableQuery() {
			t.Errorf("variable %s: definition %q differs from its query %q", v.Name, v.Definition, v.VariableQuery())
		}
		refs := VarRefs(sel)
		if !slices.Equal(refs, names[1:i]) {
			t.Errorf("variable %s is narrowed by %v, want %v", v.Name, refs, names[1:i])
		}
	}
	if want := append([]string{"datasource"}, wantVariables...); !slices.Equal(names, want) {
		t.Errorf("variables %v, want %v", names, want)
	}
}

func loadRules(t *testing.T) []Rule {
	t.Helper()
	g, err := LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	return g.Rules()
}

// The report's verdict codes (plugin README) that descriptions may name.
var verdicts = []string{"upstream_failing", "coredns_overloaded", "answers_lost", "search_path", "internal_failing", "everything_failing"}

// TestRules: every alert has a for, a severity, a summary and a description
// that points at the README's "Reading a failed line" or a report verdict,
// and names only verdicts that exist.
func TestRules(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "Reading a failed line") {
		t.Fatal(`README.md has no "Reading a failed line", which the alerts point at`)
	}
	rules := loadRules(t)
	if len(rules) < 7 {
		t.Errorf("%d rules", len(rules))
	}
	word := regexp.MustCompile(`verdicts? ([a-z_]+)`)
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" || seen[r.Alert] || r.For == "" || r.Labels["severity"] == "" {
			t.Errorf("rule %q: want a unique alert name, a for and a severity label", r.Alert)
		}
		seen[r.Alert] = true
		sum, desc := r.Annotations["summary"], r.Annotations["description"]
		if sum == "" || desc == "" || len(r.Annotations) != 2 {
			t.Errorf("%s: annotations %v, want summary and description", r.Alert, r.Annotations)
		}
		if !strings.Contains(desc, "Reading a failed line") && !strings.Contains(desc, "verdict") {
			t.Errorf("%s: the description points neither at README's Reading a failed line nor at a verdict", r.Alert)
		}
		for _, m := range word.FindAllStringSubmatch(desc, -1) {
			if !slices.Contains(verdicts, m[1]) {
				t.Errorf("%s: names verdict %q, not one of %v", r.Alert, m[1], verdicts)
			}
		}
	}
}

// TestPrometheusRule: the committed manifest is what `make monitoring-rule`
// generates, and its spec holds exactly the rules file's rules.
func TestPrometheusRule(t *testing.T) {
	got, want := File(PrometheusRuleFile), PrometheusRule(File(RulesFile))
	if string(got) != string(want) {
		t.Fatalf("%s is not generated from %s: run make monitoring-rule", PrometheusRuleFile, RulesFile)
	}
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string
		Metadata   struct{ Name, Namespace string }
		Spec       RuleGroups
	}
	if err := yaml.Unmarshal(got, &pr); err != nil {
		t.Fatal(err)
	}
	g, err := LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Errorf("%s: %s %s %s", PrometheusRuleFile, pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	if !reflect.DeepEqual(pr.Spec, g) || len(g.Rules()) == 0 {
		t.Errorf("the PrometheusRule's spec differs from %s:\n%+v\nvs\n%+v", RulesFile, pr.Spec, g)
	}
}

// exprs is every PromQL expression of the dashboard and the rules, by where
// it is.
func exprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	d := loadDashboard(t)
	for _, p := range d.AllPanels() {
		for _, tg := range p.Targets {
			out["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range d.Templating.List[1:] {
		sel, _, _ := LabelValues(v.VariableQuery())
		out["variable "+v.Name] = sel
	}
	for _, r := range loadRules(t) {
		out["alert "+r.Alert] = r.Expr
	}
	return out
}

// TestMetricsList: metrics.txt lists exactly the names the files use.
func TestMetricsList(t *testing.T) {
	listed, err := Metrics()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for where, e := range exprs(t) {
		names := MetricNames(e)
		if len(names) == 0 {
			t.Errorf("%s: no metric name in %q", where, e)
		}
		for _, n := range names {
			used[n] = true
			if listed[n] == "" {
				t.Errorf("%s uses %s, which %s does not list", where, n, MetricsFile)
			}
		}
	}
	for n := range listed {
		if !used[n] {
			t.Errorf("%s lists %s, which nothing uses", MetricsFile, n)
		}
	}
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (status, bitmap) (rate(coredns_dnsdiag_sessions_total{server=~"$server", status="Failed"}[$__rate_interval]))`: {"coredns_dnsdiag_sessions_total"},
		`histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) > 1e3`:                                                     {"a_bucket"},
		`x > on (namespace) group_left () 1.5 * avg by (namespace) (y offset 5m) or vector(0)`:                                 {"x", "y"},
		`sum without (pod) (rate(b{l="sum(c)"}[1m:10s])) and ignoring (code) d`:                                                {"b", "d"},
	} {
		if got := MetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("MetricNames(%q) = %v, want %v", expr, got, want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	got := Substitute(`a{pod=~"$pod", server=~"${server}", ns=~"${namespace:regex}"}[$__rate_interval] $other`,
		map[string]string{"pod": "p.*", "server": "s", "namespace": "n", "__rate_interval": "15s"})
	if want := `a{pod=~"p.*", server=~"s", ns=~"n"}[15s] $other`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
