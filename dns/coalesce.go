package dns

import "sync"

// flightResult is what the leader of a flight got from upstream: the
// answer as bytes nobody changes (followers copy them), its rcode and the
// addresses it teaches, or the error that ended it.
type flightResult struct {
	msg   []byte
	rcode int
	addrs []learnedAddr
	err   error
}

// flights coalesces concurrent identical misses: the first query for a
// key forwards it, the others asked meanwhile wait for its answer, so a
// burst of the same question (every process of a build resolving the
// registry at once) costs one upstream query.
type flights struct {
	mu sync.Mutex
	m  map[answerKey]*flight
}

type flight struct {
	done chan struct{}
	res  flightResult
}

// do runs fetch for key unless a flight for key is under way, in which
// case it waits for that one's result. fetch always returns (the
// forwarder bounds every exchange), so waiters do too.
func (f *flights) do(key answerKey, fetch func() flightResult) flightResult {
	f.mu.Lock()
	if fl, ok := f.m[key]; ok {
		f.mu.Unlock()
		<-fl.done
		return fl.res
	}
	if f.m == nil {
		f.m = make(map[answerKey]*flight)
	}
	fl := &flight{done: make(chan struct{})}
	f.m[key] = fl
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.m, key)
		f.mu.Unlock()
		close(fl.done)
	}()
	fl.res = fetch()
	return fl.res
}
