#!/usr/bin/env bash
# Send all traffic back to an earlier revision of the Container Apps app.
#
#   deploy/azure/rollback.sh              # the revision created just before the one serving now
#   deploy/azure/rollback.sh REVISION     # a named revision (az containerapp revision list ... -o table)
#
# The revision is activated first (it may have been deactivated), then receives 100% of the traffic.
# The next deploy.sh run sends traffic to its new revision again. Models are not touched: to roll back
# a model, move the champion alias instead (pneumonia-zoo promote, or the MLflow UI).
#
# Settings: AZ_RESOURCE_GROUP (default pneumonia-zoo), AZ_APP_NAME (default pneumonia-zoo).
set -euo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

die() {
    echo "rollback.sh: $*" >&2
    exit 1
}

group=${AZ_RESOURCE_GROUP:-pneumonia-zoo}
app=${AZ_APP_NAME:-pneumonia-zoo}
target=${1:-}

# Every revision, newest first: NAME <tab> TRAFFIC-WEIGHT.
listing=$(az containerapp revision list --name "$app" --resource-group "$group" --all \
    --query "reverse(sort_by([], &properties.createdTime))[].[name, properties.trafficWeight]" --output tsv)
[ -n "$listing" ] || die "app $app in $group has no revisions"

names=()
weights=()
while IFS=$'\t' read -r name weight; do
    [ -n "$name" ] || continue
    names+=("$name")
    weights+=("${weight:-0}")
done <<<"$listing"

current=
for i in "${!names[@]}"; do
    if [[ ${weights[$i]} =~ ^[0-9]+$ ]] && ((weights[i] > 0)); then
        current=${names[$i]}
        if [ -z "$target" ]; then
            ((i + 1 < ${#names[@]})) || die "no revision older than $current to roll back to"
            target=${names[$((i + 1))]}
        fi
        break
    fi
done
[ -n "$target" ] || die "no revision receives traffic; name the one to roll back to"

known=0
for name in "${names[@]}"; do
    [ "$name" != "$target" ] || known=1
done
((known)) || die "revision $target is not a revision of $app (see: az containerapp revision list -n $app -g $group -o table)"
[ "$target" != "$current" ] || die "$target already receives the traffic"

echo "==> rolling back $app from ${current:-<none>} to $target" >&2
az containerapp revision activate --name "$app" --resource-group "$group" --revision "$target" --output none
az containerapp ingress traffic set --name "$app" --resource-group "$group" \
    --revision-weight latest=0 "$target=100" --output none
az containerapp ingress traffic show --name "$app" --resource-group "$group" --output table
echo "to retire the bad revision: az containerapp revision deactivate -n $app -g $group --revision ${current:-REVISION}"
