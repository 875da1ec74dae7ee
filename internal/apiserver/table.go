package apiserver

import (
	"encoding/json"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// defaultColumns is upstream's table for kinds without columns of their own.
var defaultColumns = []metav1.TableColumnDefinition{resource.NameColumn, resource.AgeColumn}

func defaultRow(obj runtime.Object) []any {
	m, _ := meta.Accessor(obj)
	return []any{m.GetName(), resource.Age(m.GetCreationTimestamp())}
}

// includeObject reads the includeObject parameter: what each row carries
// besides its cells (default: the object's metadata).
func includeObject(r *http.Request) metav1.IncludeObjectPolicy {
	switch p := metav1.IncludeObjectPolicy(r.URL.Query().Get("includeObject")); p {
	case metav1.IncludeNone, metav1.IncludeObject:
		return p
	}
	return metav1.IncludeMetadata
}

// toTable renders objects as upstream's server-side table.
func toTable(res *resource.Resource, objs []runtime.Object, include metav1.IncludeObjectPolicy, headers bool) (*metav1.Table, error) {
	cols, row := res.Columns, res.Row
	if cols == nil || row == nil {
		cols, row = defaultColumns, defaultRow
	}
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}, Rows: make([]metav1.TableRow, 0, len(objs))}
	if headers {
		t.ColumnDefinitions = cols
	}
	for _, obj := range objs {
		tr := metav1.TableRow{Cells: row(obj)}
		var embedded any
		switch include {
		case metav1.IncludeMetadata:
			embedded = partialMetadata(obj)
		case metav1.IncludeObject:
			embedded = withKind(obj, res.Kind)
		}
		if embedded != nil {
			raw, err := json.Marshal(embedded)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			tr.Object = runtime.RawExtension{Raw: raw}
		}
		t.Rows = append(t.Rows, tr)
	}
	return t, nil
}
