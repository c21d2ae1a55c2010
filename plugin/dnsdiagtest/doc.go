// Package dnsdiagtest holds what the tests of dnsdiag share across packages:
// the schema of a session line (Line, Parse) and a SyncBuffer to collect a
// logger's or a child process's output. The plugin's unit tests, the e2e
// suite and the bench runner all read session lines; with one definition
// here, a field the plugin adds is decoded the same way everywhere.
//
// It is a non-test package so that other packages' tests can import it; the
// plugin itself never does.
package dnsdiagtest
