package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/apiserver/auth"
	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/pki"
)

// The cluster API is how servers join and leave a cluster of several, on
// the API server's port under ClusterAPIPrefix:
//
//	POST   /v1-skiff/server-bootstrap        the CA key and node token
//	GET    /v1-skiff/etcd/members            etcd's members
//	POST   /v1-skiff/etcd/members            add a joining server as a learner
//	DELETE /v1-skiff/etcd/members/{name}     remove a server's member
//
// Trust model. The node token is the cluster's root secret: it pins the
// CA (so a joiner verifies the server before sending it) and it
// authenticates, as system:node-bootstrap, whoever may become a server.
// Such a caller gets the CA key and can therefore mint any identity,
// admin included; handing it over is what makes the new host a server,
// and it travels only inside TLS the joiner has verified against the CA
// its token pins. Node identities (system:node:<name> certificates) are
// refused: a compromised node must not escalate to a server. Today the
// same token also joins agents, as k3s's does when no separate agent
// token is set; an agent-only token, if one is added, must map to another
// user than system:node-bootstrap. Removing a member is for
// administrators (system:masters) only. Membership changes are proxied
// through this API rather than exposing etcd's client port beyond the
// loopback: etcd then needs only its peer port on the network.
const ClusterAPIPrefix = "/v1-skiff/"

// Paths of the cluster API.
const (
	ServerBootstrapPath = ClusterAPIPrefix + "server-bootstrap"
	EtcdMembersPath     = ClusterAPIPrefix + "etcd/members"
)

// AddMemberRequest is a joining server's request to be added to etcd.
type AddMemberRequest struct {
	// Name is the joiner's etcd member name; PeerURL its advertised peer URL.
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

// AddMemberResponse is the added learner and every member, the joiner's
// initial cluster.
type AddMemberResponse struct {
	Member  etcd.Member   `json:"member"`
	Members []etcd.Member `json:"members"`
}

// MembersResponse lists etcd's members and names the one serving the
// request.
type MembersResponse struct {
	Members []etcd.Member `json:"members"`
	Self    string        `json:"self,omitempty"`
	// Leader names the member leading etcd, as the serving member sees
	// it; empty while the cluster has no leader (no quorum).
	Leader string `json:"leader,omitempty"`
}

// serverRecordPrefix keys, in etcd, each server's API address by its
// member name: removing a member must also drop that server's Lease in
// the `kubernetes` endpoints, named after its address.
const serverRecordPrefix = "/skiff/servers/"

// serverRecord is what a server records about itself.
type serverRecord struct {
	APIServer string `json:"apiServer"` // "IP:port", its endpoints Lease's identity
}

// clusterAPI serves the cluster API of one server.
type clusterAPI struct {
	bundle *pki.Bundle
	etcd   *clientv3.Client // nil with an external etcd
	self   string           // this server's member name
	leader func() uint64    // the etcd leader's member ID; nil with an external etcd
	kube   func() (kubernetes.Interface, error)
	log    *slog.Logger
}

func (c *clusterAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ServerBootstrapPath, c.mayJoin(c.serveBootstrap))
	mux.HandleFunc("GET "+EtcdMembersPath, c.mayJoin(c.embedded(c.serveMembers)))
	mux.HandleFunc("POST "+EtcdMembersPath, c.mayJoin(c.embedded(c.serveAddMember)))
	mux.HandleFunc("DELETE "+EtcdMembersPath+"/{name}", c.admin(c.embedded(c.serveRemoveMember)))
	mux.HandleFunc(ClusterAPIPrefix, func(w http.ResponseWriter, r *http.Request) {
		writeClusterError(w, http.StatusNotFound, fmt.Errorf("no %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// mayJoin admits holders of the node token and administrators.
func (c *clusterAPI) mayJoin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, _ := auth.UserFrom(r.Context())
		if u.Name != auth.UserNodeBootstrap && !slices.Contains(u.Groups, auth.GroupMasters) {
			writeClusterError(w, http.StatusForbidden, fmt.Errorf("user %q may not join servers: use the server's node token", u.Name))
			return
		}
		next(w, r)
	}
}

// admin admits administrators only.
func (c *clusterAPI) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, _ := auth.UserFrom(r.Context())
		if !slices.Contains(u.Groups, auth.GroupMasters) {
			writeClusterError(w, http.StatusForbidden, fmt.Errorf("user %q may not remove servers: use an admin kubeconfig", u.Name))
			return
		}
		next(w, r)
	}
}

// embedded answers 501 on a server whose etcd is external: its members
// are not ours to change.
func (c *clusterAPI) embedded(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.etcd == nil {
			writeClusterError(w, http.StatusNotImplemented, errors.New("this server uses an external etcd"))
			return
		}
		next(w, r)
	}
}

func (c *clusterAPI) serveBootstrap(w http.ResponseWriter, r *http.Request) {
	secrets, err := c.bundle.ServerSecrets()
	if err != nil {
		writeClusterError(w, http.StatusInternalServerError, err)
		return
	}
	u, _ := auth.UserFrom(r.Context())
	c.log.Info("handed server secrets to a joining server", "user", u.Name, "remote", r.RemoteAddr)
	writeClusterJSON(w, http.StatusOK, secrets)
}

func (c *clusterAPI) serveMembers(w http.ResponseWriter, r *http.Request) {
	members, err := etcd.ListMembers(r.Context(), c.etcd)
	if err != nil {
		writeClusterError(w, http.StatusServiceUnavailable, err)
		return
	}
	resp := MembersResponse{Members: members, Self: c.self}
	if c.leader != nil {
		id := c.leader()
		for _, m := range members {
			if m.ID == id {
				resp.Leader = m.Name
			}
		}
	}
	writeClusterJSON(w, http.StatusOK, resp)
}

func (c *clusterAPI) serveAddMember(w http.ResponseWriter, r *http.Request) {
	var req AddMemberRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeClusterError(w, http.StatusBadRequest, fmt.Errorf("decode request: %w", err))
		return
	}
	if req.Name == "" || req.PeerURL == "" {
		writeClusterError(w, http.StatusBadRequest, errors.New("name and peerURL are required"))
		return
	}
	member, members, err := etcd.AddLearner(r.Context(), c.etcd, req.Name, req.PeerURL)
	if err != nil {
		writeClusterError(w, memberErrorStatus(err), err)
		return
	}
	c.log.Info("added etcd learner for a joining server", "member", req.Name, "peerURL", req.PeerURL, "id", member.IDHex)
	writeClusterJSON(w, http.StatusCreated, AddMemberResponse{Member: member, Members: members})
}

func (c *clusterAPI) serveRemoveMember(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	removed, err := etcd.RemoveMember(r.Context(), c.etcd, name)
	if err != nil {
		writeClusterError(w, memberErrorStatus(err), err)
		return
	}
	c.log.Info("removed etcd member", "member", name, "id", removed.IDHex)
	// The removed server can no longer write, so it cannot take itself
	// out of the `kubernetes` endpoints: do it for it. Failing here does
	// not undo the removal; its Lease would expire anyway.
	if err := c.forgetServer(r.Context(), name); err != nil {
		c.log.Warn("removed server's endpoints lease", "member", name, "err", err)
	}
	writeClusterJSON(w, http.StatusOK, removed)
}

// forgetServer deletes the API server Lease of the server whose member is
// name, and its record.
func (c *clusterAPI) forgetServer(ctx context.Context, name string) error {
	key := serverRecordPrefix + name
	resp, err := c.etcd.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read server record: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	var rec serverRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return fmt.Errorf("decode server record: %w", err)
	}
	if host, port, ok := splitIdentity(rec.APIServer); ok {
		kube, err := c.kube()
		if err != nil {
			return err
		}
		r := newEndpointsReconciler(kube, apiServerLeases, host, int(port), DefaultAPIServerLeaseDuration, func(ctx context.Context, ids []string) error {
			return writeEndpoints(ctx, kube, metav1.NamespaceDefault, "kubernetes", apiServerSubsets(ids))
		})
		// leave deletes the Lease and rewrites the endpoints without it.
		if err := r.leave(ctx); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if _, err := c.etcd.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete server record: %w", err)
	}
	return nil
}

// recordServer notes this server's API address under its member name.
func recordServer(ctx context.Context, c *clientv3.Client, name, advertise string, port int) error {
	data, err := json.Marshal(serverRecord{APIServer: net.JoinHostPort(advertise, strconv.Itoa(port))})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, serverRecordPrefix+name, string(data)); err != nil {
		return fmt.Errorf("record server: %w", err)
	}
	return nil
}

// memberErrorStatus maps a membership error to an HTTP status: 503 with
// Retry-After for what passes by itself, 409 for conflicts the operator
// must resolve.
func memberErrorStatus(err error) int {
	switch {
	case etcd.Retryable(err):
		return http.StatusServiceUnavailable
	case errors.Is(err, etcd.ErrNoSuchMember):
		return http.StatusNotFound
	case errors.Is(err, etcd.ErrAlreadyMember), errors.Is(err, etcd.ErrNameTaken), errors.Is(err, etcd.ErrLastMember):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

// clusterError is the cluster API's error body.
type clusterError struct {
	Message string `json:"message"`
}

func writeClusterError(w http.ResponseWriter, code int, err error) {
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeClusterJSON(w, code, clusterError{Message: err.Error()})
}

func writeClusterJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // secrets must not linger in caches
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
