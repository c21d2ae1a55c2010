package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/coredns/caddy"
)

// directives parses plugin.cfg ("name:package" lines, # comments) into the
// execution order, and refuses a name that no compiled-in plugin registered:
// without this check caddy would silently ignore the directive's position.
func directives(cfg string) ([]string, error) {
	var order []string
	seen := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(cfg))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, pkg, ok := strings.Cut(text, ":")
		if !ok || name == "" || pkg == "" {
			return nil, fmt.Errorf("line %d: want name:package, got %q", line, text)
		}
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("line %d: %q already listed on line %d", line, name, prev)
		}
		if _, err := caddy.DirectiveAction("dns", name); err != nil {
			return nil, fmt.Errorf("line %d: plugin %q is not compiled in", line, name)
		}
		seen[name] = line
		order = append(order, name)
	}
	return order, sc.Err()
}
