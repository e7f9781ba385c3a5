
#compdef qwen

_qwen_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _QWEN_COMPLETE=complete_zsh qwen)
}

compdef _qwen_completion qwen

