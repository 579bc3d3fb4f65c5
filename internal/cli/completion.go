package cli

import (
	"fmt"
	"strings"
)

const bashCompletion = `# bash completion for sekisho; load with: source <(sekisho completion bash)
_sekisho() {
  local cur prev words cword
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s" -- "$cur")); return
  fi
  case "$prev" in
    --config|--data-dir) COMPREPLY=($(compgen -f -- "$cur")); return;;
  esac
  case "${COMP_WORDS[1]}" in
    serve) COMPREPLY=($(compgen -W "--config --address --data-dir --log-format --log-level --watch --help" -- "$cur"));;
    reload) COMPREPLY=($(compgen -W "--config --data-dir --help" -- "$cur"));;
    check) COMPREPLY=($(compgen -W "--config --data-dir --strict --help" -- "$cur"));;
    user)
      if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "%s" -- "$cur"));
      else COMPREPLY=($(compgen -W "--config --data-dir --email --groups --password-stdin --help" -- "$cur")); fi;;
    apikey)
      if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "%s" -- "$cur"));
      else COMPREPLY=($(compgen -W "--config --data-dir --name --route --methods --paths --expires --help" -- "$cur")); fi;;
    store)
      if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "migrate copy" -- "$cur"));
      else COMPREPLY=($(compgen -W "--config --data-dir --dry-run --from --to --help" -- "$cur")); fi;;
    policy)
      if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "test" -- "$cur"));
      else COMPREPLY=($(compgen -f -W "--config --help" -- "$cur")); fi;;
    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur"));;
  esac
}
complete -F _sekisho sekisho
`

func runCompletion(env Env, args []string) error {
	fs := flags(env, "completion", "completion bash|zsh")
	if err := parse(fs, args); err != nil {
		return err
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	script := fmt.Sprintf(bashCompletion, strings.Join(names, " "), strings.Join(userCommands, " "), strings.Join(apikeyCommands, " "))
	switch fs.Arg(0) {
	case "bash":
		fmt.Fprint(env.Stdout, script)
	case "zsh":
		fmt.Fprint(env.Stdout, "# zsh completion for sekisho; load with: source <(sekisho completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n"+script)
	default:
		return usageError{"completion: name a shell: bash or zsh"}
	}
	return nil
}
