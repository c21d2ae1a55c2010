package dnsdiag

import "time"

// run is an instance's periodic work, on one goroutine from startup until
// stop is closed: it releases held sessions whose window has closed, says
// what the rate limit suppressed and closes the report's windows. At stop it releases every held
// session and reports once more, so that nothing held is lost on a reload
// or shutdown.
func (d *Dnsdiag) run(stop <-chan struct{}) {
	due := time.NewTicker(dueInterval)
	defer due.Stop()
	limits := time.NewTicker(reportInterval)
	defer limits.Stop()
	last := time.Now()
	for {
		select {
		case now := <-due.C:
			d.diag.release(now, d.release)
			flushHintDrops()
			if d.report != nil {
				d.report.sample()
				d.report.tick(now)
			}
		case now := <-limits.C:
			d.reportLimits(now.Sub(last))
			last = now
		case <-stop:
			d.diag.releaseAll(d.release)
			flushHintDrops()
			d.reportLimits(time.Since(last))
			return
		}
	}
}

func (d *Dnsdiag) reportLimits(window time.Duration) {
	d.policy.limiter.report(window)
	d.policy.hintLimiter.report(window)
}
