package resource

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateVolumes checks each volume has a unique DNS-1123 label name and
// exactly one source, and returns the names for the mounts to refer to.
func validateVolumes(vols []corev1.Volume, path *field.Path) (sets.Set[string], field.ErrorList) {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, v := range vols {
		p := path.Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(p.Child("name"), ""))
		case names.Has(v.Name):
			errs = append(errs, field.Duplicate(p.Child("name"), v.Name))
		default:
			errs = append(errs, coreNamesErrors(p.Child("name"), v.Name, validation.IsDNS1123Label(v.Name))...)
		}
		names.Insert(v.Name)
		errs = append(errs, validateVolumeSource(&v.VolumeSource, p)...)
	}
	return names, errs
}

// validateVolumeSource counts the sources set and checks the common ones in
// detail; the many vendor sources are counted only, as skiff cannot mount
// them anyway and the kubelet reports that on the pod.
func validateVolumeSource(s *corev1.VolumeSource, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	count := func(set bool) bool {
		if set {
			n++
		}
		return set
	}
	if count(s.EmptyDir != nil) && s.EmptyDir.SizeLimit != nil && s.EmptyDir.SizeLimit.Sign() < 0 {
		errs = append(errs, field.Invalid(path.Child("emptyDir", "sizeLimit"), s.EmptyDir.SizeLimit.String(), "must be greater than or equal to 0"))
	}
	if count(s.HostPath != nil) {
		errs = append(errs, validateVolumePath(s.HostPath.Path, path.Child("hostPath", "path"), false)...)
	}
	if count(s.Secret != nil) {
		p := path.Child("secret")
		if s.Secret.SecretName == "" {
			errs = append(errs, field.Required(p.Child("secretName"), ""))
		}
		errs = append(errs, validateFileMode(s.Secret.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(s.Secret.Items, p.Child("items"))...)
	}
	if count(s.ConfigMap != nil) {
		p := path.Child("configMap")
		if s.ConfigMap.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		errs = append(errs, validateFileMode(s.ConfigMap.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(s.ConfigMap.Items, p.Child("items"))...)
	}
	if count(s.PersistentVolumeClaim != nil) && s.PersistentVolumeClaim.ClaimName == "" {
		errs = append(errs, field.Required(path.Child("persistentVolumeClaim", "claimName"), ""))
	}
	if count(s.DownwardAPI != nil) {
		p := path.Child("downwardAPI")
		errs = append(errs, validateFileMode(s.DownwardAPI.DefaultMode, p.Child("defaultMode"))...)
		for i, it := range s.DownwardAPI.Items {
			errs = append(errs, validateVolumePath(it.Path, p.Child("items").Index(i).Child("path"), true)...)
		}
	}
	if count(s.Projected != nil) {
		errs = append(errs, validateFileMode(s.Projected.DefaultMode, path.Child("projected", "defaultMode"))...)
	}
	if count(s.Ephemeral != nil) && s.Ephemeral.VolumeClaimTemplate == nil {
		errs = append(errs, field.Required(path.Child("ephemeral", "volumeClaimTemplate"), ""))
	}
	if count(s.CSI != nil) && s.CSI.Driver == "" {
		errs = append(errs, field.Required(path.Child("csi", "driver"), ""))
	}
	if count(s.Image != nil) && s.Image.Reference == "" {
		errs = append(errs, field.Required(path.Child("image", "reference"), ""))
	}
	for _, other := range []bool{
		s.GCEPersistentDisk != nil, s.AWSElasticBlockStore != nil, s.GitRepo != nil, s.NFS != nil,
		s.ISCSI != nil, s.Glusterfs != nil, s.RBD != nil, s.FlexVolume != nil, s.Cinder != nil,
		s.CephFS != nil, s.Flocker != nil, s.FC != nil, s.AzureFile != nil, s.VsphereVolume != nil,
		s.Quobyte != nil, s.AzureDisk != nil, s.PhotonPersistentDisk != nil, s.PortworxVolume != nil,
		s.ScaleIO != nil, s.StorageOS != nil,
	} {
		count(other)
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(path, "must specify a volume type"))
	case n > 1:
		errs = append(errs, field.Forbidden(path, "may not specify more than 1 volume type"))
	}
	return errs
}

func validateKeyToPaths(items []corev1.KeyToPath, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, it := range items {
		p := path.Index(i)
		if it.Key == "" {
			errs = append(errs, field.Required(p.Child("key"), ""))
		}
		errs = append(errs, validateVolumePath(it.Path, p.Child("path"), true)...)
		errs = append(errs, validateFileMode(it.Mode, p.Child("mode"))...)
	}
	return errs
}

// validateVolumePath rejects paths that could escape the volume: relative
// paths (for files inside a volume) must not be absolute or contain "..".
func validateVolumePath(v string, path *field.Path, relative bool) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(path, "")}
	}
	if !relative {
		return nil
	}
	if strings.HasPrefix(v, "/") {
		return field.ErrorList{field.Invalid(path, v, "must be a relative path")}
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return field.ErrorList{field.Invalid(path, v, "must not contain '..'")}
		}
	}
	return nil
}

func validateFileMode(m *int32, path *field.Path) field.ErrorList {
	if m != nil && (*m < 0 || *m > 0o777) {
		return field.ErrorList{field.Invalid(path, *m, "must be a number between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}
