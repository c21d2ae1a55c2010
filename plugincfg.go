// Package dnsdiag holds plugin.cfg, the plugin order of the custom CoreDNS
// build. The file lives at the repository root (where CoreDNS keeps its own),
// and Go can only embed files at or below the embedding package, hence this
// package. The plugin itself is in plugin/dnsdiag.
package dnsdiag

import _ "embed"

// PluginCfg is the content of plugin.cfg.
//
//go:embed plugin.cfg
var PluginCfg string
