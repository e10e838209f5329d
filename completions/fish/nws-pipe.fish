# fish completion for nws-pipe(1)
complete -c nws-pipe -l raw -d 'Byte chunks both ways instead of lines'
complete -c nws-pipe -l json -d 'Whole frames both ways, as nws-proxy clients see them'
complete -c nws-pipe -l to -x -d 'Send direct messages to this peer only'
complete -c nws-pipe -s w -l wait -x -d 'Read stdin once this many peers are present'
complete -c nws-pipe -s t -l timeout -x -d 'Give up waiting for peers after this many seconds'
complete -c nws-pipe -s 1 -l once -d 'Exit once stdin has ended and was handed on'
complete -c nws-pipe -l via-proxy -f -a 'ws://localhost:9009' -d 'Attach through a running nws-proxy'
complete -c nws-pipe -l listen -x -d "Where the pipeline's nws-link accepts links"
complete -c nws-pipe -s d -l domain -x -d 'DNS-SD domain instead of local'
complete -c nws-pipe -l tsig-key -r -F -d 'TSIG key (tsig-keygen) to publish in the -d domain'
complete -c nws-pipe -l dns-server -x -d "Send DNS updates here, not to the zone's primary"
complete -c nws-pipe -l max-frame -x -d 'Largest frame'
complete -c nws-pipe -l channel-file -r -F -d 'Read the channel name from a file'
complete -c nws-pipe -s v -l verbose -d 'Say more on stderr'
complete -c nws-pipe -s h -l help -d 'Print usage'
complete -c nws-pipe -s V -l version -d 'Print the version'
