package obs

// WithEgressObserver calls f with every egress flow before its line is
// written (the kernel verdict path counts proxy-path connections with it).
// f runs on the caller's goroutine and must not block.
func WithEgressObserver(f func(Flow)) AuditorOption {
	return func(o *auditorOptions) { o.observe = f }
}
