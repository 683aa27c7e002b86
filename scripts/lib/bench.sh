# Shared by the bench scripts (sourced): installing what they need and timing a command.
# Each timing is user + sys CPU seconds from /usr/bin/time, the best of $RUNS runs.

# need COMMAND PACKAGE: installs the Debian package when the command is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 (for $1)" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q "$2" >/dev/null
    else
        sudo apt-get install -y -q "$2" >/dev/null
    fi
}

# best_of LABEL OUTPUT CMD...: runs CMD $RUNS times (OUTPUT, if not /dev/null, removed before
# each run so every run writes a fresh file); prints "wall cpu" of the run with the least CPU
# time. CMD's stdout and stderr go to $BENCH/log.LABEL, the timing to $BENCH/time.LABEL.
best_of() {
    local label=$1 output=$2 best="" t
    shift 2
    for _ in $(seq "$RUNS"); do
        [ "$output" = /dev/null ] || rm -f "$output"
        /usr/bin/time -f "%e %U %S" -o "$BENCH/time.$label" "$@" >"$BENCH/log.$label" 2>&1
        t=$(awk '{ printf "%.3f %.3f", $1, $2 + $3 }' "$BENCH/time.$label")
        if [ -z "$best" ] || awk -v a="${t#* }" -v b="${best#* }" 'BEGIN { exit !(a < b) }'; then
            best=$t
        fi
    done
    echo "$best"
}
