package selfstat

import "testing"

// BenchmarkRead is the cost of one scrape or report tick on this machine.
func BenchmarkRead(b *testing.B) {
	r := NewReader("/")
	b.ReportAllocs()
	for b.Loop() {
		r.Read()
	}
}
