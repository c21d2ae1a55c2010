package dnsdiag

import (
	"fmt"
	"strconv"

	"github.com/dnsdiag/dnsdiag/plugin/report"
)

// threshold is one `threshold NAME VALUE` of the report: a count or a
// share of report.Config.
type threshold struct {
	name  string
	count func(*report.Config) *uint64  // a count, at least 1
	share func(*report.Config) *float64 // a share, in (0, 1]
}

// thresholds are the report's thresholds by option name; README.md lists
// them with their defaults (report.DefaultConfig).
var thresholds = []threshold{
	{name: "min_failures", count: func(c *report.Config) *uint64 { return &c.MinFailures }},
	{name: "failure_share", share: func(c *report.Config) *float64 { return &c.FailureShare }},
	{name: "min_sessions", count: func(c *report.Config) *uint64 { return &c.MinSessions }},
	{name: "search_share", share: func(c *report.Config) *float64 { return &c.SearchShare }},
	{name: "min_answers_lost", count: func(c *report.Config) *uint64 { return &c.MinAnswersLost }},
	{name: "min_drops", count: func(c *report.Config) *uint64 { return &c.MinDrops }},
	{name: "throttled_share", share: func(c *report.Config) *float64 { return &c.ThrottledShare }},
}

func thresholdByName(name string) *threshold {
	for i := range thresholds {
		if thresholds[i].name == name {
			return &thresholds[i]
		}
	}
	return nil
}

func thresholdNames() []string {
	names := make([]string, len(thresholds))
	for i, t := range thresholds {
		names[i] = t.name
	}
	return names
}

// set parses value into c.
func (t *threshold) set(c *report.Config, value string) error {
	if t.count != nil {
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("want a count of at least 1, got %q", value)
		}
		*t.count(c) = n
		return nil
	}
	f, err := strconv.ParseFloat(value, 64)
	if err != nil || !(f > 0 && f <= 1) {
		return fmt.Errorf("want a share in (0, 1] such as 0.05, got %q", value)
	}
	*t.share(c) = f
	return nil
}
