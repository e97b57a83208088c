// compose-check loads compose files with compose-go, the loader `docker compose` itself uses, so
// CI checks deploy/compose/ as `docker compose config` would, without a Docker engine: the
// Compose Specification's schema, interpolation, and that every service, volume and network
// referred to is defined. Prints each project's normalized model with -v.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	files, verbose := os.Args[1:], false
	if len(files) > 0 && files[0] == "-v" {
		files, verbose = files[1:], true
	}
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-v] FILE...")
		os.Exit(2)
	}
	failed := false
	for _, file := range files {
		options, err := cli.NewProjectOptions([]string{file}, cli.WithOsEnv, cli.WithConsistency(true))
		if err == nil {
			project, loadErr := options.LoadProject(context.Background())
			if err = loadErr; err == nil {
				if verbose {
					out, _ := project.MarshalYAML()
					fmt.Print(string(out))
				}
				fmt.Printf("%s: ok, %d services\n", file, len(project.Services))
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
