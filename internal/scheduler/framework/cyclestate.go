package framework

// StateData is a plugin's per-attempt data. Clone must deep-copy whatever
// PreFilterExtensions change, so preemption can try what-ifs.
type StateData interface {
	Clone() StateData
}

// StateKey names a plugin's data in CycleState.
type StateKey string

// CycleState is the scratch space of one scheduling attempt. It is written
// only by PreFilter and PreScore, which run on one goroutine, and read by
// Filter and Score on many; so it needs no lock.
type CycleState struct {
	data map[StateKey]StateData
	// SkipFilterPlugins and SkipScorePlugins name the plugins whose
	// PreFilter/PreScore returned Skip.
	SkipFilterPlugins map[string]bool
	SkipScorePlugins  map[string]bool
	// filters are the Filter plugins this attempt runs, fixed once
	// PreFilter has run (prepared), so filtering thousands of nodes does
	// not look every plugin up in SkipFilterPlugins on every node.
	filters  []FilterPlugin
	prepared bool
	// noNominated records that no pod was nominated anywhere when the
	// attempt began; nominations change only between attempts (the loop
	// writes them), so filtering skips the nominator's lock per node.
	noNominated bool
}

// NewCycleState makes an empty state.
func NewCycleState() *CycleState {
	return &CycleState{data: map[StateKey]StateData{}, SkipFilterPlugins: map[string]bool{}, SkipScorePlugins: map[string]bool{}}
}

// Read returns the data under key, or nil.
func (c *CycleState) Read(key StateKey) StateData { return c.data[key] }

// Write stores data under key.
func (c *CycleState) Write(key StateKey, data StateData) { c.data[key] = data }

// Clone deep-copies the state.
func (c *CycleState) Clone() *CycleState {
	n := &CycleState{
		data: make(map[StateKey]StateData, len(c.data)), SkipFilterPlugins: c.SkipFilterPlugins, SkipScorePlugins: c.SkipScorePlugins,
		filters: c.filters, prepared: c.prepared, noNominated: c.noNominated,
	}
	for k, v := range c.data {
		n.data[k] = v.Clone()
	}
	return n
}
