package lru

import (
	"fmt"
	"sync"
	"testing"
)

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[string, int](3)
	c.Put("a", 1)
	c.Put("b", 2)
	c.Put("c", 3)
	if v, ok := c.Get("a"); !ok || v != 1 { // a is now the most recent
		t.Fatalf("Get(a) = %d, %v", v, ok)
	}
	c.Put("d", 4) // evicts b
	if _, ok := c.Get("b"); ok {
		t.Fatal("b was not evicted")
	}
	for k, want := range map[string]int{"a": 1, "c": 3, "d": 4} {
		if v, ok := c.Get(k); !ok || v != want {
			t.Fatalf("Get(%s) = %d, %v, want %d", k, v, ok, want)
		}
	}
	c.Put("c", 30) // replace, no eviction
	if c.Len() != 3 {
		t.Fatalf("Len = %d after replacing", c.Len())
	}
	if v, _ := c.Get("c"); v != 30 {
		t.Fatalf("c = %d after replacing", v)
	}
	c.Delete("a")
	c.Delete("missing")
	if _, ok := c.Get("a"); ok || c.Len() != 2 {
		t.Fatalf("after Delete: Len %d", c.Len())
	}
	c.Clear()
	if c.Len() != 0 {
		t.Fatalf("after Clear: Len %d", c.Len())
	}
	c.Put("x", 1)
	if v, ok := c.Get("x"); !ok || v != 1 {
		t.Fatal("unusable after Clear")
	}
}

// The cache never holds more than Max entries, whatever the order of
// operations, and keeps exactly the Max most recently used keys.
func TestBoundAndRecency(t *testing.T) {
	const max = 50
	c := New[int, int](max)
	var order []int // most recent last, unique
	touch := func(k int) {
		for i, o := range order {
			if o == k {
				order = append(order[:i], order[i+1:]...)
				break
			}
		}
		order = append(order, k)
		if len(order) > max {
			order = order[1:]
		}
	}
	for i := range 10000 {
		k := (i * 7919) % 173
		if i%3 == 0 {
			if _, ok := c.Get(k); ok {
				touch(k)
			}
			continue
		}
		c.Put(k, i)
		touch(k)
		if c.Len() > max {
			t.Fatalf("Len %d > %d", c.Len(), max)
		}
	}
	if c.Len() != len(order) {
		t.Fatalf("Len %d, model %d", c.Len(), len(order))
	}
	for _, k := range order {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("key %d missing", k)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New[string, int](100)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := fmt.Sprint((g*31 + i) % 300)
				c.Put(k, i)
				c.Get(k)
				if i%10 == 0 {
					c.Delete(k)
				}
			}
		}()
	}
	wg.Wait()
	if c.Len() > 100 {
		t.Fatalf("Len %d", c.Len())
	}
}

func TestNewRejectsZero(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New(0) did not panic")
		}
	}()
	New[int, int](0)
}
