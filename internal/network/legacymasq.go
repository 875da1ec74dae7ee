package network

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// bridgeMasqChain matches the names of the chains the CNI bridge plugin
// makes for ipMasq: "CNI-" and 24 hex digits of a hash of network name and
// container ID. portmap's chains (CNI-DN-…, CNI-HOSTPORT-…) do not match.
var bridgeMasqChain = regexp.MustCompile(`^CNI-[0-9a-f]{24}$`)

// RemoveBridgeMasquerade deletes the per-pod masquerade chains that the
// CNI bridge plugin made for network while skiff still configured it with
// ipMasq, and the POSTROUTING rules that jump to them. The plugin removes
// a pod's chain only when the configuration at deletion still says
// ipMasq, so pods started before SyncMasquerade took over would leave
// theirs behind for good, and a later pod given the same IP would still be
// masqueraded towards other nodes.
//
// Only chains whose rules carry the plugin's comment for network are
// touched. It works through the iptables commands the plugin itself uses;
// without them there is nothing to remove. It returns how many chains it
// removed.
func RemoveBridgeMasquerade(ctx context.Context, network string) (int, error) {
	if _, err := exec.LookPath("iptables-save"); err != nil {
		return 0, nil
	}
	out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
	if err != nil {
		return 0, fmt.Errorf("iptables-save -t nat: %w", err)
	}
	jumps, chains, err := bridgeMasqRules(string(out), network)
	if err != nil {
		return 0, err
	}
	iptables := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-t", "nat"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	var errs []error
	// The jumps first: a chain still referenced cannot be deleted.
	for _, j := range jumps {
		errs = append(errs, iptables(append([]string{"-D"}, j...)...))
	}
	removed := 0
	for _, c := range chains {
		if err := errors.Join(iptables("-F", c), iptables("-X", c)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// bridgeMasqRules reads iptables-save output of the nat table and returns
// the POSTROUTING rules (as arguments after -A) that jump to network's
// bridge masquerade chains, and those chains.
func bridgeMasqRules(save, network string) (jumps [][]string, chains []string, err error) {
	comment := fmt.Sprintf("name: %q id: ", network)
	seen := map[string]bool{}
	for line := range strings.Lines(save) {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		args, err := splitSaveLine(strings.TrimSpace(line))
		if err != nil {
			return nil, nil, fmt.Errorf("iptables-save line %q: %w", line, err)
		}
		chain, target, note := args[1], flagValue(args, "-j"), flagValue(args, "--comment")
		if !strings.HasPrefix(note, comment) {
			continue
		}
		switch {
		case chain == "POSTROUTING" && bridgeMasqChain.MatchString(target):
			jumps = append(jumps, args[1:])
			if !seen[target] {
				seen[target] = true
				chains = append(chains, target)
			}
		case bridgeMasqChain.MatchString(chain) && !seen[chain]:
			// A chain whose jump is gone already.
			seen[chain] = true
			chains = append(chains, chain)
		}
	}
	return jumps, chains, nil
}

// flagValue returns the argument after flag, or "".
func flagValue(args []string, flag string) string {
	for i := range len(args) - 1 {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// splitSaveLine splits a rule as iptables-save prints it into arguments:
// words separated by spaces, where a double-quoted part may hold spaces
// and backslash-escaped quotes.
func splitSaveLine(s string) ([]string, error) {
	var (
		args            []string
		cur             strings.Builder
		quoted, escaped bool
		started         bool
	)
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quoted && r == '\\':
			escaped = true
		case r == '"':
			quoted, started = !quoted, true
		case r == ' ' && !quoted:
			if started {
				args = append(args, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if quoted || escaped {
		return nil, errors.New("unterminated quote")
	}
	if started {
		args = append(args, cur.String())
	}
	if len(args) < 2 {
		return nil, errors.New("no chain")
	}
	return args, nil
}
