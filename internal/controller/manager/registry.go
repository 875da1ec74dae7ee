package manager

import (
	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/cronjob"
	"github.com/skiffhq/skiff/internal/controller/csrsigning"
	"github.com/skiffhq/skiff/internal/controller/daemonset"
	"github.com/skiffhq/skiff/internal/controller/deployment"
	"github.com/skiffhq/skiff/internal/controller/endpoints"
	"github.com/skiffhq/skiff/internal/controller/endpointslice"
	"github.com/skiffhq/skiff/internal/controller/garbagecollector"
	"github.com/skiffhq/skiff/internal/controller/job"
	"github.com/skiffhq/skiff/internal/controller/namespace"
	"github.com/skiffhq/skiff/internal/controller/nodeipam"
	"github.com/skiffhq/skiff/internal/controller/nodelifecycle"
	"github.com/skiffhq/skiff/internal/controller/podgc"
	"github.com/skiffhq/skiff/internal/controller/replicaset"
	"github.com/skiffhq/skiff/internal/controller/serviceaccount"
	"github.com/skiffhq/skiff/internal/controller/statefulset"
)

// Controllers lists every controller the manager runs, in start order.
// Adding one is a package with a Descriptor plus one line here.
func Controllers() []controller.Descriptor {
	return []controller.Descriptor{
		namespace.Descriptor,
		replicaset.Descriptor,
		deployment.Descriptor,
		endpointslice.Descriptor,
		endpoints.Descriptor,
		garbagecollector.Descriptor,
		nodelifecycle.Descriptor,
		nodeipam.Descriptor,
		podgc.Descriptor,
		serviceaccount.Descriptor,
		job.Descriptor,
		cronjob.Descriptor,
		daemonset.Descriptor,
		statefulset.Descriptor,
		csrsigning.Descriptor,
	}
}
