package sysroot

// libostree writes the boot entry keys it does not know by name in the
// iteration order of a GLib GHashTable (string keys, g_str_hash). That
// order depends on the set of keys and the order they were inserted in,
// so strHashOrder reproduces GLib's open-addressing table (GLib 2.84,
// ghash.c): 8 buckets to start with (modulus 7), index (hash*11) mod
// modulus, triangular probing, and growth when the table is 15/16 full
// to the shift of nnodes*1.333, with GLib's in-place rehash.

// primeMod is GLib's prime_mod table, indexed by shift.
var primeMod = [...]uint32{1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191}

// gstrHash is GLib's g_str_hash (djb2 over signed chars).
func gstrHash(s string) uint32 {
	h := uint32(5381)
	for i := 0; i < len(s); i++ {
		h = h<<5 + h + uint32(int32(int8(s[i])))
	}
	if h < 2 {
		h = 2 // HASH_IS_REAL
	}
	return h
}

type ghash struct {
	hashes    []uint32 // 0: unused
	keys      []string
	mod, mask uint32
	nnodes    int
}

func newGhash() *ghash {
	g := &ghash{}
	g.setShift(3)
	return g
}

func (g *ghash) setShift(shift int) {
	size := uint32(1) << shift
	g.mod, g.mask = primeMod[shift], size-1
	g.hashes = make([]uint32, size)
	g.keys = make([]string, size)
}

func (g *ghash) index(h uint32) uint32 { return (h * 11) % g.mod }

// insert adds key (an existing key keeps its bucket).
func (g *ghash) insert(key string) {
	h := gstrHash(key)
	i, step := g.index(h), uint32(0)
	for g.hashes[i] != 0 {
		if g.hashes[i] == h && g.keys[i] == key {
			return
		}
		step++
		i = (i + step) & g.mask
	}
	g.hashes[i], g.keys[i] = h, key
	g.nnodes++
	size := len(g.hashes)
	if size <= g.nnodes+g.nnodes/16 {
		g.resize()
	}
}

// resize grows the table as g_hash_table_resize does, relocating the
// entries in place in bucket order (evicted entries are placed next).
func (g *ghash) resize() {
	oldHashes, oldKeys := g.hashes, g.keys
	shift := 0
	for n := int(float64(g.nnodes) * 1.333); n > 0; n >>= 1 {
		shift++
	}
	shift = max(shift, 3)
	size := 1 << shift
	// GLib reallocates the arrays (old entries stay at their indices) and
	// relocates them, marking buckets that hold relocated entries.
	g.mod, g.mask = primeMod[shift], uint32(size-1)
	g.hashes = make([]uint32, size)
	g.keys = make([]string, size)
	copy(g.hashes, oldHashes)
	copy(g.keys, oldKeys)
	done := make([]bool, size)
	for i := range oldHashes {
		h := g.hashes[i]
		if h == 0 || done[i] {
			continue
		}
		key := g.keys[i]
		g.hashes[i], g.keys[i] = 0, ""
		for {
			j, step := g.index(h), uint32(0)
			for done[j] {
				step++
				j = (j + step) & g.mask
			}
			done[j] = true
			rh, rk := g.hashes[j], g.keys[j]
			g.hashes[j], g.keys[j] = h, key
			if rh == 0 {
				break
			}
			h, key = rh, rk
		}
	}
}

// order returns the keys in iteration order.
func (g *ghash) order() []string {
	var out []string
	for i, h := range g.hashes {
		if h != 0 {
			out = append(out, g.keys[i])
		}
	}
	return out
}

// strHashOrder returns keys (inserted in this order, duplicates ignored)
// in the iteration order of a GHashTable of strings.
func strHashOrder(keys []string) []string {
	g := newGhash()
	for _, k := range keys {
		g.insert(k)
	}
	return g.order()
}
