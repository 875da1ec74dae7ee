package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Membership errors, for callers that answer them differently.
var (
	// ErrJoinInProgress means another member is being added and has not
	// yet caught up; members join one at a time, as etcd advises, so that
	// a failed join never costs the cluster its quorum.
	ErrJoinInProgress = errors.New("another member is joining the cluster")
	// ErrAlreadyMember means a voting member already has the peer URL.
	ErrAlreadyMember = errors.New("a voting member already has this peer URL")
	// ErrNameTaken means a member of another peer URL has the name.
	ErrNameTaken = errors.New("a member with this name exists at another peer URL")
	// ErrNoSuchMember means no member has the name.
	ErrNoSuchMember = errors.New("no such member")
	// ErrLastMember means the member is the cluster's only one.
	ErrLastMember = errors.New("the cluster's only member cannot be removed")
	// ErrNotYet means etcd refused a membership change to protect its
	// quorum: its members have not all been connected for a few seconds
	// (a member just joined or came back). Trying again shortly works.
	ErrNotYet = errors.New("the cluster is not settled enough for a membership change yet")
	// ErrNoQuorum means etcd could not answer in time: too few of its
	// members are running to agree on anything. It passes when enough of
	// them are back; if they never come back, a server must be reset to
	// a single member (`skiff server --cluster-reset`).
	ErrNoQuorum = errors.New("etcd has no quorum: too few of its members are running")
)

// Retryable reports whether a membership change refused with err may
// succeed if tried again shortly.
func Retryable(err error) bool {
	return errors.Is(err, ErrJoinInProgress) || errors.Is(err, ErrNotYet) || errors.Is(err, ErrNoQuorum)
}

// settle marks etcd's quorum-protection refusals as ErrNotYet, and its
// timeouts for want of a quorum as ErrNoQuorum.
func settle(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrUnhealthy), errors.Is(err, rpctypes.ErrMemberNotEnoughStarted):
		return fmt.Errorf("%w: %w", ErrNotYet, err)
	case errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost), errors.Is(err, rpctypes.ErrNoLeader):
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	return err
}

// Member is one member of the cluster.
type Member struct {
	// ID is etcd's member ID, printed in hex as etcd prints it.
	ID uint64 `json:"-"`
	// IDHex is ID in hex, for JSON: a uint64 does not survive JSON
	// numbers read as float64.
	IDHex string `json:"id"`
	// Name is empty until the member first starts.
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	// Learner is true until the member is promoted to a voter.
	Learner bool `json:"learner,omitempty"`
}

func toMember(m interface {
	GetID() uint64
	GetName() string
	GetPeerURLs() []string
	GetClientURLs() []string
	GetIsLearner() bool
}) Member {
	return Member{ID: m.GetID(), IDHex: fmt.Sprintf("%x", m.GetID()), Name: m.GetName(),
		PeerURLs: m.GetPeerURLs(), ClientURLs: m.GetClientURLs(), Learner: m.GetIsLearner()}
}

// ListMembers returns the cluster's members, sorted by name.
func ListMembers(ctx context.Context, c *clientv3.Client) ([]Member, error) {
	resp, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd: list members: %w", settle(err))
	}
	out := make([]Member, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, toMember(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddLearner adds a non-voting member with peerURL, to be named name,
// and returns it and the resulting members. A learner receives the log
// without counting towards the quorum, so a joiner that never comes up
// costs nothing; it becomes a voter with Promote once it has caught up.
// A learner (or a never-started member) left at peerURL by an earlier
// failed join is replaced.
func AddLearner(ctx context.Context, c *clientv3.Client, name, peerURL string) (Member, []Member, error) {
	members, err := ListMembers(ctx, c)
	if err != nil {
		return Member{}, nil, err
	}
	for _, m := range members {
		same := slices.Contains(m.PeerURLs, peerURL)
		switch {
		case same && (m.Learner || m.Name == ""):
			if _, err := c.MemberRemove(ctx, m.ID); err != nil {
				return Member{}, nil, fmt.Errorf("etcd: remove the unfinished member %x at %s: %w", m.ID, peerURL, settle(err))
			}
		case same:
			return Member{}, nil, fmt.Errorf("etcd: %s (member %q): %w", peerURL, m.Name, ErrAlreadyMember)
		case m.Name == name:
			return Member{}, nil, fmt.Errorf("etcd: %q at %s: %w", name, strings.Join(m.PeerURLs, ","), ErrNameTaken)
		case m.Learner || m.Name == "":
			return Member{}, nil, fmt.Errorf("etcd: member %x at %s: %w", m.ID, strings.Join(m.PeerURLs, ","), ErrJoinInProgress)
		}
	}
	resp, err := c.MemberAddAsLearner(ctx, []string{peerURL})
	if errors.Is(err, rpctypes.ErrMemberNotFound) {
		// etcd derives a new member's ID from its peer URL and the
		// current second, and never reuses a removed member's ID: adding
		// at a peer URL within the second its member was removed is
		// refused, in these words. The next second it works.
		err = fmt.Errorf("%w: %w", ErrNotYet, err)
	}
	if err != nil {
		return Member{}, nil, fmt.Errorf("etcd: add learner %s: %w", peerURL, settle(err))
	}
	added := toMember(resp.Member)
	added.Name = name
	out := make([]Member, 0, len(resp.Members))
	for _, m := range resp.Members {
		mm := toMember(m)
		if mm.ID == added.ID {
			mm.Name = name
		}
		out = append(out, mm)
	}
	return added, out, nil
}

// InitialCluster renders members as etcd's initial-cluster setting for a
// member joining them: every member, started or not, by name. A joiner
// must list exactly the cluster's members or etcd refuses it.
func InitialCluster(members []Member) (string, error) {
	var parts []string
	for _, m := range members {
		if m.Name == "" {
			return "", fmt.Errorf("etcd: member %x at %s has no name yet: %w", m.ID, strings.Join(m.PeerURLs, ","), ErrJoinInProgress)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, m.Name+"="+u)
		}
	}
	return strings.Join(parts, ","), nil
}

// Promote makes the learner id a voting member once the leader finds it
// caught up, trying every interval until then or until ctx ends.
func Promote(ctx context.Context, c *clientv3.Client, id uint64, interval time.Duration) error {
	for {
		_, err := c.MemberPromote(ctx, id)
		if err == nil {
			return nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("etcd: promote member %x: %w (last: %v)", id, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// RemoveMember removes the member called name and returns it. A member
// that never started has no name yet: name may also be its ID in hex, to
// clear a join that failed half-way.
func RemoveMember(ctx context.Context, c *clientv3.Client, name string) (Member, error) {
	members, err := ListMembers(ctx, c)
	if err != nil {
		return Member{}, err
	}
	i := slices.IndexFunc(members, func(m Member) bool { return m.Name == name })
	if i < 0 {
		i = slices.IndexFunc(members, func(m Member) bool { return m.IDHex == strings.ToLower(name) })
	}
	if i < 0 {
		return Member{}, fmt.Errorf("etcd: member %q: %w", name, ErrNoSuchMember)
	}
	if len(members) == 1 {
		return Member{}, fmt.Errorf("etcd: member %q: %w", name, ErrLastMember)
	}
	if _, err := c.MemberRemove(ctx, members[i].ID); err != nil {
		return Member{}, fmt.Errorf("etcd: remove member %q: %w", name, settle(err))
	}
	return members[i], nil
}

// UpdatePeerURL makes the cluster dial member id at peerURL, when it has
// another: a server restarted with another advertise address, or a single
// server turned into the first of several.
func UpdatePeerURL(ctx context.Context, c *clientv3.Client, id uint64, peerURL string) (bool, error) {
	members, err := ListMembers(ctx, c)
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if m.ID != id {
			continue
		}
		if len(m.PeerURLs) == 1 && m.PeerURLs[0] == peerURL {
			return false, nil
		}
		if _, err := c.MemberUpdate(ctx, id, []string{peerURL}); err != nil {
			return false, fmt.Errorf("etcd: update member %x peer URL to %s: %w", id, peerURL, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("etcd: member %x: %w", id, ErrNoSuchMember)
}

// MemberID returns the running member's ID; zero before Start.
func (s *Server) MemberID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e == nil {
		return 0
	}
	return uint64(s.e.Server.MemberID())
}

// LeaderID returns the ID of the member this one follows (or its own,
// when it leads); zero before Start and while there is no leader.
func (s *Server) LeaderID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e == nil {
		return 0
	}
	return uint64(s.e.Server.Leader())
}

// Name is the member's name.
func (s *Server) Name() string { return s.cfg.Name }

// PeerURL is the peer URL the member advertises, which names it in the
// cluster.
func (s *Server) PeerURL() string { return s.ecfg.AdvertisePeerUrls[0].String() }
