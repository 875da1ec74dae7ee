package resource

// All returns every kind the API server serves, in discovery order. Adding a
// kind is a file describing it plus one line here.
func All() []*Resource {
	return []*Resource{
		// core/v1
		Namespaces(), Pods(), Nodes(), Services(), Endpoints(), ConfigMaps(), Secrets(), CoreEvents(), ServiceAccounts(),
		// apps/v1
		Deployments(), ReplicaSets(), DaemonSets(), StatefulSets(), ControllerRevisions(),
		// batch/v1
		Jobs(), CronJobs(),
		// certificates.k8s.io/v1
		CertificateSigningRequests(),
		// coordination.k8s.io/v1
		Leases(),
		// discovery.k8s.io/v1
		EndpointSlices(),
		// events.k8s.io/v1
		Events(),
		// scheduling.k8s.io/v1
		PriorityClasses(),
	}
}
