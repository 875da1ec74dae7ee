package openapi

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// kind is a fixture builder for one served Kind.
func kind(group, version, k, resource string, namespaced bool, obj, list runtime.Object) Kind {
	return Kind{
		GVK:        schema.GroupVersionKind{Group: group, Version: version, Kind: k},
		Object:     obj,
		List:       list,
		Resource:   resource,
		Namespaced: namespaced,
	}
}

// testKinds is a cluster's worth of kinds across several groups.
func testKinds() []Kind {
	return []Kind{
		kind("", "v1", "Pod", "pods", true, &corev1.Pod{}, &corev1.PodList{}),
		kind("", "v1", "Service", "services", true, &corev1.Service{}, &corev1.ServiceList{}),
		kind("", "v1", "ConfigMap", "configmaps", true, &corev1.ConfigMap{}, &corev1.ConfigMapList{}),
		kind("", "v1", "Secret", "secrets", true, &corev1.Secret{}, &corev1.SecretList{}),
		kind("", "v1", "Namespace", "namespaces", false, &corev1.Namespace{}, &corev1.NamespaceList{}),
		kind("", "v1", "Node", "nodes", false, &corev1.Node{}, &corev1.NodeList{}),
		kind("", "v1", "Event", "events", true, &corev1.Event{}, &corev1.EventList{}),
		kind("apps", "v1", "Deployment", "deployments", true, &appsv1.Deployment{}, &appsv1.DeploymentList{}),
		kind("apps", "v1", "ReplicaSet", "replicasets", true, &appsv1.ReplicaSet{}, &appsv1.ReplicaSetList{}),
		kind("apps", "v1", "DaemonSet", "daemonsets", true, &appsv1.DaemonSet{}, &appsv1.DaemonSetList{}),
		kind("apps", "v1", "StatefulSet", "statefulsets", true, &appsv1.StatefulSet{}, &appsv1.StatefulSetList{}),
		kind("batch", "v1", "Job", "jobs", true, &batchv1.Job{}, &batchv1.JobList{}),
		kind("batch", "v1", "CronJob", "cronjobs", true, &batchv1.CronJob{}, &batchv1.CronJobList{}),
		kind("coordination.k8s.io", "v1", "Lease", "leases", true, &coordinationv1.Lease{}, &coordinationv1.LeaseList{}),
		kind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, &discoveryv1.EndpointSlice{}, &discoveryv1.EndpointSliceList{}),
		kind("events.k8s.io", "v1", "Event", "events", true, &eventsv1.Event{}, &eventsv1.EventList{}),
		kind("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, &schedulingv1.PriorityClass{}, &schedulingv1.PriorityClassList{}),
	}
}
