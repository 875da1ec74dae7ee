package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// Patch media types.
const (
	mediaJSONPatch      = "application/json-patch+json"
	mediaMergePatch     = "application/merge-patch+json"
	mediaStrategicPatch = "application/strategic-merge-patch+json"
	mediaApplyPatch     = "application/apply-patch+yaml"
)

// patcher turns the current object's JSON into the patched JSON.
type patcher func(cur []byte) ([]byte, error)

// jsonPatcher ignores the current object: a PUT body replaces it.
func jsonPatcher(body []byte) patcher {
	return func([]byte) ([]byte, error) { return body, nil }
}

// patcherFor returns the patch function for the request's patch type.
// dataStruct is the typed object that strategic merge reads its merge keys
// and strategies from.
func patcherFor(media string, patch []byte, dataStruct runtime.Object) (patcher, error) {
	switch media {
	case mediaJSONPatch:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: %v", err))
		}
		return func(cur []byte) ([]byte, error) {
			out, err := p.Apply(cur)
			if err != nil {
				return nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid, Message: err.Error()}}
			}
			return out, nil
		}, nil
	case mediaMergePatch:
		if !json.Valid(patch) {
			return nil, apierrors.NewBadRequest("error decoding patch: invalid JSON")
		}
		return func(cur []byte) ([]byte, error) {
			out, err := jsonpatch.MergePatch(cur, patch)
			if err != nil {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			return out, nil
		}, nil
	case mediaStrategicPatch:
		if !json.Valid(patch) {
			return nil, apierrors.NewBadRequest("error decoding patch: invalid JSON")
		}
		return func(cur []byte) ([]byte, error) {
			out, err := strategicpatch.StrategicMergePatch(cur, patch, dataStruct)
			if err != nil {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			return out, nil
		}, nil
	case mediaApplyPatch:
		return nil, unsupportedMediaMsg("server-side apply is not supported yet; use client-side kubectl apply")
	}
	return nil, unsupportedMedia(media)
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if !subresourceAllows(info.res, info.subresource, "patch") || info.subresource == "finalize" {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "patch")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	mode, err := parseFieldValidation(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var dataStruct runtime.Object = info.res.New()
	if info.subresource == "scale" {
		dataStruct = &autoscalingv1.Scale{}
	}
	p, err := patcherFor(bodyMedia(r), body, dataStruct)
	if err != nil {
		return err
	}
	if info.subresource == "scale" {
		return s.updateScale(w, r, info, out, dry, mode, p)
	}
	var warnings []string
	updated, err := s.updateObject(r.Context(), info, dry, func(cur runtime.Object) (runtime.Object, error) {
		cur = cur.DeepCopyObject()
		cur.GetObjectKind().SetGroupVersionKind(info.res.Kind)
		curJSON, err := json.Marshal(cur)
		if err != nil {
			return nil, err
		}
		patched, err := p(curJSON)
		if err != nil {
			return nil, err
		}
		obj := newObject(info.res)
		if warnings, err = decodeObject(patched, obj, info.res.Kind, mode); err != nil {
			return nil, err
		}
		m, _ := meta.Accessor(obj)
		cm, _ := meta.Accessor(cur)
		if m.GetName() != cm.GetName() || m.GetNamespace() != cm.GetNamespace() {
			return nil, apierrors.NewBadRequest("metadata.name and metadata.namespace cannot be changed by a patch")
		}
		return obj, nil
	})
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	writeObject(w, http.StatusOK, out.media, updated)
	return nil
}

// toScale renders an object's scale subresource.
func toScale(res *resource.Resource, obj runtime.Object) *autoscalingv1.Scale {
	m, _ := meta.Accessor(obj)
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp(),
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: res.Scale.SpecReplicas(obj)},
		Status: autoscalingv1.ScaleStatus{Replicas: res.Scale.StatusReplicas(obj), Selector: res.Scale.Selector(obj)},
	}
}

// updateScale changes an object's replicas through its scale subresource,
// for both PUT (p ignores the current scale) and PATCH.
func (s *Server) updateScale(w http.ResponseWriter, r *http.Request, info *requestInfo, out output, dry bool, mode fieldValidation, p patcher) error {
	scaleGVK := autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	var warnings []string
	scaleInfo := *info
	scaleInfo.subresource = "scale"
	updated, err := s.updateObject(r.Context(), &scaleInfo, dry, func(cur runtime.Object) (runtime.Object, error) {
		curJSON, err := json.Marshal(toScale(info.res, cur))
		if err != nil {
			return nil, err
		}
		patched, err := p(curJSON)
		if err != nil {
			return nil, err
		}
		var sc autoscalingv1.Scale
		if warnings, err = decodeObject(patched, &sc, scaleGVK, mode); err != nil {
			return nil, err
		}
		cm, _ := meta.Accessor(cur)
		if sc.Name != "" && sc.Name != info.name {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", sc.Name, info.name))
		}
		if sc.ResourceVersion != "" && sc.ResourceVersion != cm.GetResourceVersion() {
			return nil, apierrors.NewConflict(info.res.Resource().GroupResource(), info.name, errModified)
		}
		if sc.Spec.Replicas < 0 {
			return nil, apierrors.NewInvalid(scaleGVK.GroupKind(), info.name, field.ErrorList{
				field.Invalid(field.NewPath("spec", "replicas"), sc.Spec.Replicas, "must be greater than or equal to 0")})
		}
		obj := cur.DeepCopyObject()
		info.res.Scale.SetReplicas(obj, sc.Spec.Replicas)
		return obj, nil
	})
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	writeObject(w, http.StatusOK, out.media, toScale(info.res, updated))
	return nil
}

// unsupportedMediaMsg is a 415 with a specific message.
func unsupportedMediaMsg(msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType, Message: msg,
	}}
}
