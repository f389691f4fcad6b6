package redisstore

// WithoutBatching runs every script in its own round trip, as before the batcher: the
// benchmarks compare the two.
func WithoutBatching() Option { return func(s *Store) { s.batch = nil } }
