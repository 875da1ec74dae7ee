// Package history keeps the ControllerRevisions of DaemonSets and
// StatefulSets: one snapshot per distinct pod template, numbered in the
// order templates were applied, so that `kubectl rollout history` lists
// them and `kubectl rollout undo` can patch one back.
package history

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// HashLabel is the label that ties pods and revisions to a template.
const HashLabel = appsv1.ControllerRevisionHashLabelKey

// Owner is the workload whose templates are recorded.
type Owner struct {
	Meta metav1.Object
	Kind schema.GroupVersionKind
	// Labels go on the revision; they must match the owner's selector,
	// because kubectl finds revisions by it.
	Labels map[string]string
	// Template is the pod template to record.
	Template *corev1.PodTemplateSpec
}

// TemplatePatch returns a revision's data for tpl: a strategic merge patch
// that replaces spec.template wholesale. That is the form `kubectl rollout
// undo` applies to DaemonSets and StatefulSets.
func TemplatePatch(tpl *corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(tpl)
	if err != nil {
		return nil, fmt.Errorf("encode template: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("encode template: %w", err)
	}
	m["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": m}})
}

// Template decodes the pod template a revision recorded.
func Template(cr *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	raw := cr.Data.Raw
	if raw == nil && cr.Data.Object != nil {
		var err error
		if raw, err = json.Marshal(cr.Data.Object); err != nil {
			return nil, fmt.Errorf("revision %s: %w", cr.Name, err)
		}
	}
	// The "$patch" directive is not a template field; decoding ignores it.
	var d struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("revision %s: %w", cr.Name, err)
	}
	return &d.Spec.Template, nil
}

// Hash names a revision of data; collisionCount varies it when a name is
// already taken by different data.
func Hash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(*collisionCount))
		h.Write(b[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// Controlled returns the revisions controlled by uid, oldest revision first.
func Controlled(all []*appsv1.ControllerRevision, uid types.UID) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for _, cr := range all {
		if ref := metav1.GetControllerOf(cr); ref != nil && ref.UID == uid {
			out = append(out, cr)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Revision != out[j].Revision {
			return out[i].Revision < out[j].Revision
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// equalTemplate says whether cr records tpl. Templates are compared after
// decoding, so the API server's re-encoding of the data does not matter.
func equalTemplate(cr *appsv1.ControllerRevision, tpl *corev1.PodTemplateSpec) bool {
	got, err := Template(cr)
	return err == nil && apiequality.Semantic.DeepEqual(got, tpl)
}

// Find returns the revision among revs (sorted by Controlled) that records
// tpl, preferring the newest, or nil.
func Find(revs []*appsv1.ControllerRevision, tpl *corev1.PodTemplateSpec) *appsv1.ControllerRevision {
	for i := len(revs) - 1; i >= 0; i-- {
		if equalTemplate(revs[i], tpl) {
			return revs[i]
		}
	}
	return nil
}

// Ensure returns the revision for the owner's current template, creating
// it, or renumbering an older equal one as the newest (a rollback), as
// needed. revs are the owner's revisions from Controlled. It returns the
// collision count to store in the owner's status, which grows when a
// revision name is taken by a different template.
func Ensure(ctx context.Context, client kubernetes.Interface, o Owner, revs []*appsv1.ControllerRevision, collisionCount int32) (*appsv1.ControllerRevision, int32, error) {
	var latest int64
	for _, cr := range revs {
		latest = max(latest, cr.Revision)
	}
	crs := client.AppsV1().ControllerRevisions(o.Meta.GetNamespace())
	if eq := Find(revs, o.Template); eq != nil {
		if eq.Revision == latest {
			return eq, collisionCount, nil
		}
		up := eq.DeepCopy()
		up.Revision = latest + 1
		got, err := crs.Update(ctx, up, metav1.UpdateOptions{})
		if err != nil {
			return nil, collisionCount, fmt.Errorf("renumber revision %s: %w", eq.Name, err)
		}
		return got, collisionCount, nil
	}
	data, err := TemplatePatch(o.Template)
	if err != nil {
		return nil, collisionCount, err
	}
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	// Bounded: each collision changes the name, and a real collision of
	// fnv32 names twice in a row is vanishingly rare.
	for range 10 {
		cc := collisionCount
		hash := Hash(data, &cc)
		labels[HashLabel] = hash
		cr := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{
				Name:            o.Meta.GetName() + "-" + hash,
				Namespace:       o.Meta.GetNamespace(),
				Labels:          labels,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(o.Meta, o.Kind)},
			},
			Data:     runtime.RawExtension{Raw: data},
			Revision: latest + 1,
		}
		got, err := crs.Create(ctx, cr, metav1.CreateOptions{})
		if err == nil {
			return got, collisionCount, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, collisionCount, fmt.Errorf("create revision %s: %w", cr.Name, err)
		}
		// Our own revision that the cache has not shown us yet is fine;
		// anything else is a name collision.
		have, gerr := crs.Get(ctx, cr.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, collisionCount, fmt.Errorf("get revision %s: %w", cr.Name, gerr)
		}
		if ref := metav1.GetControllerOf(have); ref != nil && ref.UID == o.Meta.GetUID() && equalTemplate(have, o.Template) {
			return have, collisionCount, nil
		}
		collisionCount++
	}
	return nil, collisionCount, fmt.Errorf("revision names for %s keep colliding", o.Meta.GetName())
}

// Truncate deletes the oldest revisions beyond limit that no live pod or
// status refers to; live holds such revision names.
func Truncate(ctx context.Context, client kubernetes.Interface, revs []*appsv1.ControllerRevision, live map[string]bool, limit int32) error {
	var dead []*appsv1.ControllerRevision
	for _, cr := range revs {
		if !live[cr.Name] {
			dead = append(dead, cr)
		}
	}
	excess := len(dead) - int(limit)
	for i := 0; i < excess; i++ {
		err := client.AppsV1().ControllerRevisions(dead[i].Namespace).Delete(ctx, dead[i].Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete revision %s: %w", dead[i].Name, err)
		}
	}
	return nil
}
