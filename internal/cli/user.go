package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/sekisho/sekisho/internal/authn/local"
	"github.com/sekisho/sekisho/internal/server"
	"github.com/sekisho/sekisho/internal/store"
)

const userSynopsis = `user <add|passwd|disable|enable|unlock|list> [NAME] [flags]

  user add NAME [--email ADDRESS] [--groups a,b] [--password-stdin]
  user passwd NAME [--password-stdin]     set a new password; ends the user's sessions
  user disable NAME                       refuse sign-in and end the user's sessions
  user enable NAME
  user unlock NAME                        lift the lockout after failed sign-ins, on every
                                          replica within seconds
  user list`

// userCommands are the user subcommands, in the order help lists them.
var userCommands = []string{"add", "passwd", "disable", "enable", "unlock", "list"}

func runUser(env Env, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	fs := flags(env, "user "+sub, userSynopsis)
	cf := addConfigFlags(fs, false)
	email := fs.String("email", "", "email address (add)")
	groups := fs.String("groups", "", "comma-separated groups (add)")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input (add, passwd)")
	switch sub {
	case "":
		fmt.Fprintf(env.Stderr, "Usage: sekisho %s\n", userSynopsis)
		return usageError{"name a user command: " + strings.Join(userCommands, ", ")}
	case "-h", "--help", "-help", "help":
		fs.Usage()
		return nil
	}
	if !slices.Contains(userCommands, sub) {
		return usageError{fmt.Sprintf("unknown user command %q: want %s", sub, strings.Join(userCommands, ", "))}
	}
	// Accept NAME before or after the flags.
	rest := args[1:]
	var name string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	switch {
	case sub == "list" && name != "":
		return usageError{fmt.Sprintf("takes no account name (got %q)", name)}
	case sub != "list" && name == "":
		return usageError{"name the account"}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	st, err := server.OpenStore(cfg, defaultSecrets())
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	// notFound says which database was asked: the usual cause is another
	// data_dir than the server's.
	notFound := func(err error) error {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no user %q in %s (is this the data_dir the server uses? see --config and --data-dir)", name, st.Location())
		}
		return err
	}
	switch sub {
	case "add":
		canon, err := store.CanonicalName(name)
		if err != nil {
			return usageError{err.Error()}
		}
		if _, err := st.GetUser(ctx, canon); err == nil {
			return fmt.Errorf("user %q already exists in %s (use passwd to change the password)", canon, st.Location())
		}
		pw, err := readPassword(env, *pwStdin, canon)
		if err != nil {
			return err
		}
		hash, err := local.Hash(pw)
		if err != nil {
			return err
		}
		u := store.User{Name: canon, Email: *email, Groups: splitList(*groups), PasswordHash: hash}
		if err := st.CreateUser(ctx, u); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "added user %q to %s\n", canon, st.Location())
	case "passwd":
		if _, err := st.GetUser(ctx, name); err != nil {
			return notFound(err)
		}
		pw, err := readPassword(env, *pwStdin, name)
		if err != nil {
			return err
		}
		hash, err := local.Hash(pw)
		if err != nil {
			return err
		}
		if err := st.SetPassword(ctx, name, hash); err != nil {
			return notFound(err)
		}
		fmt.Fprintf(env.Stdout, "password changed for %q; their existing sessions end within seconds\n", name)
	case "disable", "enable":
		if err := st.SetDisabled(ctx, name, sub == "disable"); err != nil {
			return notFound(err)
		}
		if sub == "disable" {
			fmt.Fprintf(env.Stdout, "disabled %q; their existing sessions end within seconds\n", name)
		} else {
			fmt.Fprintf(env.Stdout, "enabled %q\n", name)
		}
	case "unlock":
		if err := st.UnlockUser(ctx, name); err != nil {
			return notFound(err)
		}
		fmt.Fprintf(env.Stdout, "unlocked %q: every running server accepts their sign-in again within seconds "+
			"(a lockout of the client's network address stays)\n", name)
	case "list":
		users, err := st.ListUsers(ctx)
		if err != nil {
			return err
		}
		if len(users) == 0 {
			fmt.Fprintf(env.Stderr, "no accounts in %s\n", st.Location())
			return nil
		}
		tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tEMAIL\tGROUPS\tSTATUS\tCREATED")
		for _, u := range users {
			status := "active"
			if u.Disabled {
				status = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, dash(u.Email), dash(strings.Join(u.Groups, ",")), status, u.CreatedAt.Format("2006-01-02"))
		}
		return tw.Flush()
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readPassword asks twice on a terminal (without echo), or reads one line
// from standard input with --password-stdin or when stdin is not a terminal.
func readPassword(env Env, fromStdin bool, name string) (string, error) {
	f, isFile := env.Stdin.(*os.File)
	if !fromStdin && isFile && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(env.Stderr, "New password for %s: ", name)
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", err
		}
		if err := local.CheckPassword(string(a)); err != nil {
			return "", err
		}
		fmt.Fprint(env.Stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords do not match")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(io.LimitReader(env.Stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on standard input")
	}
	if err := local.CheckPassword(pw); err != nil {
		return "", err
	}
	return pw, nil
}
