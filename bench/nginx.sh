# Sourced by the benchmark scripts (delta.sh, patch-apply.sh).
#
# start_nginx DIR ROOT PROBE [ACCESS_LOG]: starts nginx on a free port of
# 127.0.0.1 serving the directory ROOT, its configuration, pid and error log
# under DIR (removed first), waits until PROBE (a path under ROOT) answers,
# and sets PORT, BASE and NGINX_PID. With ACCESS_LOG every request is logged
# there as: status, body bytes, bytes sent, request length, "Range", "URI".
start_nginx() {
	local ng=$1 root=$2 probe=$3 log=${4:-} userline="" access="access_log off;"
	rm -rf "$ng"
	mkdir -p "$ng/tmp"
	PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	[ "$(id -u)" != 0 ] || userline="user $(id -un) $(id -gn);"
	[ -z "$log" ] || access="log_format bench '\$status \$body_bytes_sent \$bytes_sent \$request_length \"\$http_range\" \"\$request_uri\"';
	access_log \"$log\" bench;"
	cat >"$ng/nginx.conf" <<NGINX
$userline
worker_processes 1;
pid "$ng/nginx.pid";
error_log "$ng/error.log" info;
events { worker_connections 256; }
http {
	$access
	client_body_temp_path "$ng/tmp/client_body";
	proxy_temp_path "$ng/tmp/proxy";
	fastcgi_temp_path "$ng/tmp/fastcgi";
	uwsgi_temp_path "$ng/tmp/uwsgi";
	scgi_temp_path "$ng/tmp/scgi";
	default_type application/octet-stream;
	sendfile on;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$PORT;
		root "$root";
	}
}
NGINX
	nginx -p "$ng/" -c "$ng/nginx.conf" -e "$ng/error.log" -g 'daemon off;' &
	NGINX_PID=$!
	BASE=http://127.0.0.1:$PORT
	for _ in $(seq 100); do
		curl -fs -o /dev/null -r 0-0 "$BASE/$probe" && return 0
		sleep 0.1
	done
	cat "$ng/error.log" >&2
	echo "nginx does not answer on $BASE/$probe" >&2
	return 1
}
