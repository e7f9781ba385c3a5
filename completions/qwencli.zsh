
#compdef qwencli

_qwencli_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _QWENCLI_COMPLETE=complete_zsh qwencli)
}

compdef _qwencli_completion qwencli

