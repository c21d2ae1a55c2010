// Package monitoring reads dnsdiag's Grafana dashboard, its Prometheus alert
// rules and the list of metric names they use (the files beside this one),
// for the tests that check them: this package's own and
// e2e/monitoring_test.go, which evaluates every expression against a real
// Prometheus scraping the real ./coredns.
package monitoring

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// The files, by name.
const (
	DashboardFile      = "dnsdiag-dashboard.json"
	RulesFile          = "dnsdiag-alerts.rules.yml"
	PrometheusRuleFile = "dnsdiag-alerts.prometheusrule.yaml"
	MetricsFile        = "metrics.txt"
)

//go:embed dnsdiag-dashboard.json dnsdiag-alerts.rules.yml dnsdiag-alerts.prometheusrule.yaml metrics.txt
var files embed.FS

// File is the content of one of the files above.
func File(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err) // embedded: only a wrong name fails
	}
	return b
}

// ---------------------------------------------------------------------------
// The dashboard

// Dashboard is the part of Grafana's dashboard model the tests look at.
type Dashboard struct {
	UID           string
	Title         string
	SchemaVersion int
	Panels        []Panel
	Templating    struct {
		List []Variable
	}
}

// Panel is one panel (or row) of the dashboard.
type Panel struct {
	ID         int
	Type       string
	Title      string
	Datasource *DatasourceRef
	Targets    []Target
	Panels     []Panel // a collapsed row's panels
}

// Target is one query of a panel.
type Target struct {
	RefID        string `json:"refId"`
	Expr         string
	LegendFormat string `json:"legendFormat"`
	Datasource   *DatasourceRef
}

// DatasourceRef is a panel's, target's or variable's datasource.
type DatasourceRef struct {
	Type string
	UID  string
}

// Variable is one template variable.
type Variable struct {
	Name       string
	Type       string
	Query      json.RawMessage // a string for type datasource, an object for type query
	Definition string
	Datasource *DatasourceRef
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
}

// LoadDashboard parses the dashboard.
func LoadDashboard() (Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(File(DashboardFile), &d); err != nil {
		return d, fmt.Errorf("%s: %w", DashboardFile, err)
	}
	return d, nil
}

// AllPanels is every panel, rows' nested panels included, in order.
func (d Dashboard) AllPanels() []Panel {
	var out []Panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// VariableQuery is a query variable's PromQL-ish query, e.g.
// label_values(metric{...}, label).
func (v Variable) VariableQuery() string {
	var q struct{ Query string }
	if json.Unmarshal(v.Query, &q) == nil && q.Query != "" {
		return q.Query
	}
	return v.Definition
}

// labelValues matches Grafana's label_values(SELECTOR, LABEL).
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// LabelValues splits a label_values(SELECTOR, LABEL) variable query.
func LabelValues(query string) (selector, label string, ok bool) {
	m := labelValues.FindStringSubmatch(strings.TrimSpace(query))
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// Grafana's variable references: $name, ${name} and ${name:format}.
var varRef = regexp.MustCompile(`\$(?:\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}|([a-zA-Z_][a-zA-Z0-9_]*))`)

// VarRefs is every variable an expression refers to, $__ built-ins included.
func VarRefs(s string) []string {
	var out []string
	for _, m := range varRef.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1]+m[2])
	}
	return out
}

// Substitute replaces each variable reference by its value in vals; a
// reference without one is left as it is (and will not parse).
func Substitute(s string, vals map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		if v, ok := vals[m[1]+m[2]]; ok {
			return v
		}
		return ref
	})
}

// ---------------------------------------------------------------------------
// The alert rules

// Rule is one alerting rule.
type Rule struct {
	Alert       string
	Expr        string
	For         string
	Labels      map[string]string
	Annotations map[string]string
}

// RuleGroups is a Prometheus rules file, and a PrometheusRule's spec.
type RuleGroups struct {
	Groups []struct {
		Name  string
		Rules []Rule
	}
}

// LoadRules parses the rules file.
func LoadRules() (RuleGroups, error) {
	var g RuleGroups
	if err := yaml.UnmarshalStrict(File(RulesFile), &g); err != nil {
		return g, fmt.Errorf("%s: %w", RulesFile, err)
	}
	return g, nil
}

// Rules is every rule of every group.
func (g RuleGroups) Rules() []Rule {
	var out []Rule
	for _, gr := range g.Groups {
		out = append(out, gr.Rules...)
	}
	return out
}

// prometheusRuleHeader is what PrometheusRule puts before the rules.
const prometheusRuleHeader = `# Generated from dnsdiag-alerts.rules.yml by ` + "`make monitoring-rule`" + `: edit that
# file and regenerate. The release label is what kube-prometheus-stack's
# default ruleSelector looks for (its Helm release name): set yours.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: dnsdiag
  namespace: kube-system
  labels:
    app.kubernetes.io/name: dnsdiag
    release: kube-prometheus-stack
spec:
`

// PrometheusRule renders the rules file as a PrometheusRule manifest: its
// groups, text unchanged (comments before them dropped), under spec.
func PrometheusRule(rules []byte) []byte {
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	lines := strings.SplitAfter(string(rules), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "groups:") })
	for _, l := range lines[max(start, 0):] {
		if strings.TrimSpace(l) != "" {
			b.WriteString("  ")
		}
		b.WriteString(l)
	}
	return b.Bytes()
}

// ---------------------------------------------------------------------------
// Metric names

// Metric states in metrics.txt.
const (
	Exported = "exported"
	OnEvent  = "on-event"
	Pending  = "pending"
)

// Metrics is metrics.txt: metric name to state.
func Metrics() (map[string]string, error) {
	out := map[string]string{}
	for n, line := range strings.Split(string(File(MetricsFile)), "\n") {
		if line = strings.TrimSpace(line); line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || (f[1] != Exported && f[1] != OnEvent && f[1] != Pending) {
			return nil, fmt.Errorf("%s:%d: want NAME exported|on-event|pending: %q", MetricsFile, n+1, line)
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("%s:%d: %s listed twice", MetricsFile, n+1, f[0])
		}
		out[f[0]] = f[1]
	}
	return out, nil
}

var (
	// What MetricNames strips before it looks for names: string literals,
	// label matchers, range and subquery brackets, and the label lists of
	// by, without, on, ignoring, group_left and group_right.
	promStrings    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers   = regexp.MustCompile(`\{[^{}]*\}`)
	promBrackets   = regexp.MustCompile(`\[[^\[\]]*\]`)
	promLabelLists = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent      = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// promFunc is an identifier followed by "(": a function or aggregation.
	promFunc = regexp.MustCompile(`^\s*\(`)
)

// promKeywords are PromQL's words that are not metric names where a name
// could stand.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// MetricNames is every metric name a PromQL expression selects (its
// variables substituted or not), sorted, each once. It is not a parser:
// enough for the expressions of these files, which Prometheus itself parses
// in the e2e test.
func MetricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = Substitute(s, map[string]string{"__rate_interval": "1m", "__interval": "1m", "__range": "1m"})
	s = promMatchers.ReplaceAllString(s, " ")
	s = promBrackets.ReplaceAllString(s, " ")
	s = promLabelLists.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent or suffix of a number, as in 1e3
		}
		if promKeywords[strings.ToLower(name)] || promFunc.MatchString(s[loc[1]:]) {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
