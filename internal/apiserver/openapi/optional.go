package openapi

// optionalFields lists fields that upstream's generator treats as optional
// although their json tag lacks omitempty. The generator reads the
// `+optional` comment marker, which reflection cannot see; without this list
// kubectl's client-side validation would demand, say, ports on every
// EndpointSlice, where upstream's schema does not.
//
// Derived from k8s.io/api v0.37 by listing struct fields whose doc comment
// carries +optional and whose json tag has no omitempty; revisit when
// k8s.io/api is upgraded (TestOptionalFieldsExist catches entries that no
// longer name a field of a generated definition).
var optionalFields = map[string][]string{
	"io.k8s.api.apps.v1.StatefulSetOrdinals":                      {"start"},
	"io.k8s.api.apps.v1.StatefulSetSpec":                          {"serviceName"},
	"io.k8s.api.apps.v1.StatefulSetStatus":                        {"availableReplicas"},
	"io.k8s.api.apps.v1.StatefulSetCondition":                     {"type", "status"},
	"io.k8s.api.apps.v1.DeploymentCondition":                      {"type", "status"},
	"io.k8s.api.apps.v1.DaemonSetCondition":                       {"type", "status"},
	"io.k8s.api.apps.v1.ReplicaSetCondition":                      {"type", "status"},
	"io.k8s.api.apps.v1.ControllerRevision":                       {"revision"},
	"io.k8s.api.authentication.v1.TokenRequest":                   {"spec"},
	"io.k8s.api.authentication.v1.TokenRequestSpec":               {"audiences", "expirationSeconds", "boundObjectRef"},
	"io.k8s.api.authentication.v1.TokenRequestStatus":             {"token", "expirationTimestamp"},
	"io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern":  {"status"},
	"io.k8s.api.core.v1.TypedObjectReference":                     {"apiGroup"},
	"io.k8s.api.core.v1.AzureFilePersistentVolumeSource":          {"secretNamespace"},
	"io.k8s.api.core.v1.ProjectedVolumeSource":                    {"sources"},
	"io.k8s.api.core.v1.GRPCAction":                               {"service"},
	"io.k8s.api.core.v1.NodeRuntimeHandler":                       {"name"},
	"io.k8s.api.core.v1.ContainerImage":                           {"names"},
	"io.k8s.api.core.v1.TypedLocalObjectReference":                {"apiGroup"},
	"io.k8s.api.core.v1.Event":                                    {"reportingComponent", "reportingInstance"},
	"io.k8s.api.discovery.v1.EndpointSlice":                       {"endpoints", "ports"},
	"io.k8s.api.events.v1.Event":                                  {"metadata"},
	"io.k8s.api.flowcontrol.v1.FlowSchemaSpec":                    {"matchingPrecedence"},
	"io.k8s.api.flowcontrol.v1.ResourcePolicyRule":                {"namespaces"},
	"io.k8s.api.flowcontrol.v1.LimitedPriorityLevelConfiguration": {"nominalConcurrencyShares"},
	"io.k8s.api.flowcontrol.v1.QueuingConfiguration":              {"queues", "handSize", "queueLengthLimit"},
	"io.k8s.api.networking.v1.NetworkPolicySpec":                  {"podSelector"},
	"io.k8s.api.networking.v1.IngressClassParametersReference":    {"scope"},
	"io.k8s.api.policy.v1.PodDisruptionBudgetStatus":              {"disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"},
	"io.k8s.api.rbac.v1.RoleRef":                                  {"apiGroup"},
	"io.k8s.api.rbac.v1.Role":                                     {"rules"},
	"io.k8s.api.rbac.v1.ClusterRole":                              {"rules"},
	"io.k8s.api.resource.v1.CapacityRequestPolicy":                {"default"},
	"io.k8s.api.resource.v1.ResourceClaim":                        {"spec"},
	"io.k8s.api.resource.v1.ResourceClaimSpec":                    {"devices"},
	"io.k8s.api.resource.v1.DeviceClaim":                          {"requests"},
	"io.k8s.api.resource.v1.DeviceClass":                          {"spec"},
	"io.k8s.api.resource.v1.ResourceClaimTemplate":                {"spec"},
	"io.k8s.api.resource.v1.ResourceClaimTemplateSpec":            {"spec"},
	"io.k8s.api.resource.v1.AllocatedDeviceStatus":                {"conditions"},
	"io.k8s.api.scheduling.v1.PriorityClass":                      {"value"},
	"io.k8s.api.storage.v1.CSINodeDriver":                         {"topologyKeys"},
	"io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus":     {"currentMetrics"},
}

// isOptional reports whether field of definition is optional by upstream's
// comment marker.
func isOptional(definition, field string) bool {
	for _, f := range optionalFields[definition] {
		if f == field {
			return true
		}
	}
	return false
}
