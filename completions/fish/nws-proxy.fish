# fish completion for nws-proxy(1)
complete -c nws-proxy -f
complete -c nws-proxy -s p -l port -x -a 9009 -d 'Port on 127.0.0.1 and ::1'
complete -c nws-proxy -o port -x -a 9009 -d 'Port, as the original proxy took it'
complete -c nws-proxy -l max-message -x -a '64k 1M 16M' -d 'Largest message a client may send'
complete -c nws-proxy -l max-queue -x -a '1M 8M 64M' -d 'Output queued per client before it is closed'
complete -c nws-proxy -l listen -x -d 'Where nws-link accepts links ([ADDR:]PORT)'
complete -c nws-proxy -s d -l domain -x -d 'DNS-SD domain instead of local'
complete -c nws-proxy -l tsig-key -r -F -d 'TSIG key (tsig-keygen) to publish in the -d domain'
complete -c nws-proxy -l dns-server -x -d "Send DNS updates here, not to the zone's primary"
complete -c nws-proxy -l local -d 'Do not join the network'
complete -c nws-proxy -l max-frame -x -d 'Largest frame in the pipeline'
complete -c nws-proxy -s v -l verbose -d 'Say more on stderr'
complete -c nws-proxy -s h -l help -d 'Print usage'
complete -c nws-proxy -s V -l version -d 'Print the version'
