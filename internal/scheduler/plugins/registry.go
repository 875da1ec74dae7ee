// Package plugins lists every scheduler plugin and the default profile:
// which plugins run at each extension point, in which order and with
// which score weights (upstream's defaults).
package plugins

import (
	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/balancedallocation"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/defaultpreemption"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/imagelocality"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/interpodaffinity"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodeaffinity"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodename"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodeports"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/noderesourcesfit"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodeunschedulable"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/podtopologyspread"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/tainttoleration"
)

// Registry returns every plugin by name. Adding a plugin is a folder
// plus one line here (and a place in DefaultProfile).
func Registry() framework.Registry {
	return framework.Registry{
		nodeunschedulable.Name:  nodeunschedulable.New,
		nodename.Name:           nodename.New,
		tainttoleration.Name:    tainttoleration.New,
		nodeaffinity.Name:       nodeaffinity.New,
		nodeports.Name:          nodeports.New,
		noderesourcesfit.Name:   noderesourcesfit.New,
		podtopologyspread.Name:  podtopologyspread.New,
		interpodaffinity.Name:   interpodaffinity.New,
		balancedallocation.Name: balancedallocation.New,
		imagelocality.Name:      imagelocality.New,
		defaultpreemption.Name:  defaultpreemption.New,
	}
}

// DefaultProfile is upstream's default plugin set. Filters run cheapest
// and most decisive first: node-level flags and labels reject most nodes
// for pinned pods before resource arithmetic, and the two plugins that
// look at other pods across the cluster come last.
func DefaultProfile(schedulerName, scoringStrategy string) framework.Profile {
	return framework.Profile{
		SchedulerName: schedulerName,
		Filters: []string{
			nodeunschedulable.Name,
			nodename.Name,
			tainttoleration.Name,
			nodeaffinity.Name,
			nodeports.Name,
			noderesourcesfit.Name,
			podtopologyspread.Name,
			interpodaffinity.Name,
		},
		PostFilters: []string{defaultpreemption.Name},
		Scores: []framework.WeightedPlugin{
			{Name: tainttoleration.Name, Weight: 3},
			{Name: nodeaffinity.Name, Weight: 2},
			{Name: noderesourcesfit.Name, Weight: 1},
			{Name: podtopologyspread.Name, Weight: 2},
			{Name: interpodaffinity.Name, Weight: 2},
			{Name: balancedallocation.Name, Weight: 1},
			{Name: imagelocality.Name, Weight: 1},
		},
		PluginArgs: map[string]any{
			noderesourcesfit.Name: noderesourcesfit.Args{ScoringStrategy: scoringStrategy},
		},
	}
}
