package main

import (
	"fmt"
	"io"
	"strings"
)

// commands is the command tree the completion scripts offer: each command
// and its subcommands. TestCompletionTree checks it against run: every
// name here answers --help, and an unknown one is refused.
var commands = []struct {
	name string
	subs []string
}{
	{"server", nil},
	{"dev", nil},
	{"tenant", []string{"create", "list", "show", "update", "rotate-token", "revoke-previous", "delete"}},
	{"service", []string{"list", "show"}},
	{"kv", []string{"get", "put", "delete", "watch", "txn"}},
	{"cluster", []string{"remove", "transfer-leader"}},
	{"backup", nil},
	{"restore", nil},
	{"version", nil},
	{"completion", []string{"bash", "zsh", "fish"}},
}

// runCompletion prints a completion script for a shell. The scripts
// complete commands and subcommands from the tree above, and flags by
// asking the binary itself (`rafting CMD [SUB] --help`), so they never
// fall behind a flag.
func runCompletion(args []string, stdout io.Writer) error {
	fs := newFlagSet("completion")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: rafting completion bash|zsh|fish

  bash:  source <(rafting completion bash)        (or save it in /etc/bash_completion.d/rafting)
  zsh:   source <(rafting completion zsh)         (or save it as _rafting in a directory of $fpath)
  fish:  rafting completion fish | source         (or save it in ~/.config/fish/completions/rafting.fish)
`)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"usage: rafting completion bash|zsh|fish"}
	}
	var top, withSubs []string
	var cases strings.Builder
	for _, c := range commands {
		top = append(top, c.name)
		if c.subs != nil {
			withSubs = append(withSubs, c.name)
		}
	}
	shell := fs.Arg(0)
	switch shell {
	case "bash":
		for _, c := range commands {
			if c.subs != nil {
				fmt.Fprintf(&cases, "\t\t%s) subs=%q ;;\n", c.name, strings.Join(c.subs, " "))
			}
		}
		_, err := fmt.Fprintf(stdout, bashCompletion, strings.Join(top, " "), cases.String(), strings.Join(withSubs, " "))
		return err
	case "zsh":
		for _, c := range commands {
			if c.subs != nil {
				fmt.Fprintf(&cases, "\t\t%s) compadd -- %s ;;\n", c.name, strings.Join(c.subs, " "))
			}
		}
		_, err := fmt.Fprintf(stdout, zshCompletion, strings.Join(top, " "), cases.String(), strings.Join(withSubs, " "))
		return err
	case "fish":
		for _, c := range commands {
			if c.subs != nil {
				fmt.Fprintf(&cases, "complete -c rafting -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a '%s'\n",
					c.name, strings.Join(c.subs, " "), strings.Join(c.subs, " "))
			}
		}
		_, err := fmt.Fprintf(stdout, fishCompletion, strings.Join(top, " "), cases.String(), strings.Join(withSubs, " "))
		return err
	}
	return usageError{fmt.Sprintf("completion: unknown shell %q: want bash, zsh or fish", shell)}
}

// The scripts find a command's flags in its --help: lines "  -name ...".

const bashCompletion = `# bash completion for rafting: source <(rafting completion bash)
_rafting() {
	local cur=${COMP_WORDS[COMP_CWORD]} words="" subs="" i
	local -a path=() cmd=()
	for ((i = 1; i < COMP_CWORD; i++)); do
		[[ ${COMP_WORDS[i]} == -* ]] || path+=("${COMP_WORDS[i]}")
	done
	if ((${#path[@]} > 0)); then
		case ${path[0]} in
%[2]s		esac
		cmd=("${path[0]}")
		[[ -n $subs && ${#path[@]} -ge 2 ]] && cmd+=("${path[1]}")
	fi
	if [[ $cur == -* ]]; then
		((${#cmd[@]} > 0)) && words=$("${COMP_WORDS[0]}" "${cmd[@]}" --help 2>/dev/null | sed -n 's/^  -\([a-zA-Z0-9-]*\).*/--\1/p')
	elif ((${#path[@]} == 0)); then
		words="%[1]s"
	elif ((${#path[@]} == 1)); then
		words=$subs
	fi
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _rafting rafting
`

const zshCompletion = `#compdef rafting
# zsh completion for rafting: source <(rafting completion zsh)
_rafting() {
	local -a path cmd
	local w
	for w in ${words[2,CURRENT-1]}; do
		[[ $w == -* ]] || path+=($w)
	done
	if (( ${#path} > 0 )); then
		cmd=($path[1])
		[[ " %[3]s " == *" $path[1] "* ]] && (( ${#path} >= 2 )) && cmd+=($path[2])
	fi
	if [[ $words[CURRENT] == -* ]]; then
		(( ${#cmd} > 0 )) && compadd -- ${(f)"$($words[1] $cmd --help 2>/dev/null | sed -n 's/^  -\([a-zA-Z0-9-]*\).*/--\1/p')"}
	elif (( ${#path} == 0 )); then
		compadd -- %[1]s
	elif (( ${#path} == 1 )); then
		case $path[1] in
%[2]s		*) _files ;;
		esac
	else
		_files
	fi
}
if [[ $zsh_eval_context[-1] == loadautoload ]]; then
	_rafting "$@"
else
	compdef _rafting rafting
fi
`

const fishCompletion = `# fish completion for rafting: rafting completion fish | source
function __rafting_flags
	set -l words (commandline -opc)
	set -l path
	for w in $words[2..-1]
		string match -q -- '-*' $w; or set -a path $w
	end
	test (count $path) -ge 1; or return
	set -l cmd $path[1]
	if contains -- $path[1] %[3]s; and test (count $path) -ge 2
		set -a cmd $path[2]
	end
	$words[1] $cmd --help 2>/dev/null | string replace -rf '^  -([a-zA-Z0-9-]+).*' -- '--$1'
end
complete -c rafting -n __fish_use_subcommand -f -a '%[1]s'
%[2]scomplete -c rafting -n 'string match -q -- "-*" (commandline -ct)' -f -a '(__rafting_flags)'
`
