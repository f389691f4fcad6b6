package redisstore

import (
	"context"
	"fmt"
	"time"
)

// Time returns the Redis server's clock (TIME). internal/timesync uses it so that every
// replica judges expiry by one time source. In a Cluster it asks whichever node go-redis
// picks for a keyless command; the masters of one cluster are expected to run NTP.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, wrap("read the redis clock", err)
	}
	if t.IsZero() {
		return time.Time{}, fmt.Errorf("read the redis clock: zero time")
	}
	return t, nil
}
