package main

import (
	"fmt"
	"strings"

	"github.com/modelserve/modelserve/registry"
	"github.com/spf13/cobra"
)

// version opens the registry and finds NAME[:VERSION] in it.
func (g *globals) version(ref string) (*registry.Registry, registry.Version, error) {
	name, ver, err := registry.ParseRef(ref)
	if err != nil {
		return nil, registry.Version{}, err
	}
	reg, err := registry.Open(g.registry, nil)
	if err != nil {
		return nil, registry.Version{}, err
	}
	v, err := reg.Get(name, ver)
	return reg, v, err
}

// use is version for a command that reads the version's files: it holds
// the version (delete is refused) until release is called.
func (g *globals) use(ref string) (reg *registry.Registry, v registry.Version, release func() error, err error) {
	if reg, v, err = g.version(ref); err != nil {
		return nil, v, nil, err
	}
	if release, err = reg.Acquire(v); err != nil {
		return nil, v, nil, err
	}
	return reg, v, release, nil
}

// aliasesOf lists the aliases that name version, "-" for none.
func aliasesOf(aliases map[string]string, version string) string {
	if as := registry.AliasesOf(aliases, version); len(as) > 0 {
		return strings.Join(as, ",")
	}
	return "-"
}

func newAliasCmd(g *globals) *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "alias NAME ALIAS VERSION | alias --remove NAME ALIAS",
		Short: "Point an alias (prod, staging) at a version, or move it",
		Long: `Point ALIAS at NAME's VERSION: NAME:ALIAS then reads as that version
everywhere a version is named, and a server started with --model NAME:ALIAS
follows the alias when it moves (it loads and warms the new version beside
the old, switches new requests to it, lets the old one finish what it
admitted, then unloads it). A version an alias names cannot be deleted.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := registry.Open(g.registry, nil)
			if err != nil {
				return err
			}
			switch {
			case remove && len(args) == 2:
				if err := reg.RemoveAlias(args[0], args[1]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s:%s\n", args[0], args[1])
				return nil
			case !remove && len(args) == 3:
				if err := reg.SetAlias(args[0], args[1], args[2]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s:%s → %s:%s\n", args[0], args[1], args[0], args[2])
				return nil
			}
			return fmt.Errorf("usage: %s", cmd.Use)
		},
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the alias (the version stays)")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME:VERSION",
		Short: "Delete a version (refused while a service uses it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, ver, err := registry.ParseRef(args[0])
			if err != nil {
				return err
			}
			if ver == "" {
				return fmt.Errorf("delete needs NAME:VERSION; %q names no version", args[0])
			}
			reg, err := registry.Open(g.registry, nil)
			if err != nil {
				return err
			}
			if err := reg.Delete(name, ver); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s:%s\n", name, ver)
			return nil
		},
	}
}
