#!/usr/bin/env bash
# Build the image in Azure Container Registry and create or update the Azure Container Apps app.
#
#   az login
#   export AZ_ACR_NAME=pneumoniazoo$RANDOM            # globally unique, letters and digits
#   export MLFLOW_TRACKING_URI=https://mlflow.example.org
#   deploy/azure/deploy.sh
#
# Idempotent: a second run reuses the resource group, registry, identity and environment, builds a new
# image tag and rolls out a new revision (the previous one stays for deploy/azure/rollback.sh).
#
# Settings (environment variables):
#   MLFLOW_TRACKING_URI   required; stored as the Container Apps secret `mlflow-tracking-uri`. A server
#                         the cloud app can reach: a local sqlite:/file: store or localhost is refused
#   AZ_ACR_NAME           required; the registry (created when missing, SKU Basic, admin user off)
#   AZ_RESOURCE_GROUP     default pneumonia-zoo
#   AZ_LOCATION           default westeurope
#   AZ_ENVIRONMENT        Container Apps environment, default pneumonia-zoo-env
#   AZ_APP_NAME           default pneumonia-zoo
#   IMAGE_REPOSITORY      default pneumonia-zoo
#   IMAGE_TAG             default: the git commit (plus -dirty) or a timestamp
#   SKIP_BUILD=1          deploy IMAGE_TAG as already pushed, without `az acr build`
#   IMAGE_TARGET          the Dockerfile's target: slim (default: ONNX Runtime, no PyTorch; every version
#                         with an ONNX export) or full (with PyTorch: versions without ONNX too)
#   CPU, MEMORY           per replica, default 1.0 and 2Gi (a valid Container Apps pair)
#   MIN_REPLICAS, MAX_REPLICAS, CONCURRENT_REQUESTS   scale: default 1, 5 and 10 requests per replica
#   PNEUMONIA_ZOO_REGISTERED_MODEL_NAME, PNEUMONIA_ZOO_CHAMPION_ALIAS   what the service follows
#   PNEUMONIA_ZOO_API_KEY      stored as the secret `api-key`: every route but the probes then needs it
#                              (X-API-Key, or the browser's HTTP Basic password). Required with external
#                              ingress unless AZ_PLATFORM_AUTH=1: the script refuses to expose an open service
#   INGRESS                    external (default: reachable from the internet) or internal (the environment's
#                              virtual network only)
#   AZ_PLATFORM_AUTH=1         Container Apps authentication (az containerapp auth) guards the app instead
#                              of the key: checked to be enabled on the existing app before it is updated
#   PNEUMONIA_ZOO_ADMIN_TOKEN  optional; stored as the secret `admin-token`: enables the admin reload
#   PNEUMONIA_ZOO_TRUSTED_DIGESTS  optional; the only packages (model.json sha256) the service may load
#   FORWARDED_ALLOW_IPS        optional; the ingress's addresses (the environment's infrastructure subnet,
#                              CIDR) whose X-Forwarded-* headers uvicorn believes; the image trusts 127.0.0.1
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

die() {
    echo "deploy.sh: $*" >&2
    exit 1
}

command -v az >/dev/null 2>&1 ||
    die "the Azure CLI (az) is not installed: see https://learn.microsoft.com/cli/azure/install-azure-cli, then az login"

tracking_uri=${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the tracking server the service reads the registry from}
# The app runs in Azure: a store on this machine (a sqlite file, a folder, localhost) is not there.
case $tracking_uri in
    sqlite:* | file:* | /* | ./* | ../* | mlruns* | *.db)
        die "MLFLOW_TRACKING_URI '$tracking_uri' is a local store the cloud app cannot reach: use the team's tracking server (https://...)" ;;
    *://localhost[:/]* | *://localhost | *://127.* | *://\[::1\]* | *@localhost[:/]* | *@127.*)
        die "MLFLOW_TRACKING_URI points at this machine (localhost), which the cloud app cannot reach: use the team's tracking server (https://...)" ;;
    *://* | databricks) ;;
    *) die "MLFLOW_TRACKING_URI must be a server URI (https://...), not '$tracking_uri'" ;;
esac
acr=${AZ_ACR_NAME:?set AZ_ACR_NAME to a registry name (globally unique, 5-50 letters and digits)}
group=${AZ_RESOURCE_GROUP:-pneumonia-zoo}
location=${AZ_LOCATION:-westeurope}
environment=${AZ_ENVIRONMENT:-pneumonia-zoo-env}
app=${AZ_APP_NAME:-pneumonia-zoo}
repository=${IMAGE_REPOSITORY:-pneumonia-zoo}
target=${IMAGE_TARGET:-slim}
cpu=${CPU:-1.0}
memory=${MEMORY:-2Gi}
min_replicas=${MIN_REPLICAS:-1}
max_replicas=${MAX_REPLICAS:-5}
concurrent_requests=${CONCURRENT_REQUESTS:-10}
model_name=${PNEUMONIA_ZOO_REGISTERED_MODEL_NAME:-pneumonia-classifier}
champion_alias=${PNEUMONIA_ZOO_CHAMPION_ALIAS:-champion}
api_key=${PNEUMONIA_ZOO_API_KEY:-}
admin_token=${PNEUMONIA_ZOO_ADMIN_TOKEN:-}
trusted_digests=${PNEUMONIA_ZOO_TRUSTED_DIGESTS:-}
forwarded_allow_ips=${FORWARDED_ALLOW_IPS:-}
ingress=${INGRESS:-external}
platform_auth=${AZ_PLATFORM_AUTH:-0}

[[ $acr =~ ^[a-zA-Z0-9]{5,50}$ ]] || die "AZ_ACR_NAME must be 5-50 letters and digits: '$acr'"
[[ $target =~ ^(slim|full)$ ]] || die "IMAGE_TARGET must be slim or full: '$target'"
[[ $cpu =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CPU must be a number: '$cpu'"
[[ $memory =~ ^[0-9]+(\.[0-9]+)?Gi$ ]] || die "MEMORY must look like 2Gi: '$memory'"
for number in "$min_replicas" "$max_replicas" "$concurrent_requests"; do
    [[ $number =~ ^[0-9]+$ ]] || die "MIN_REPLICAS, MAX_REPLICAS and CONCURRENT_REQUESTS must be integers: '$number'"
done
((min_replicas >= 1)) || die "MIN_REPLICAS must be at least 1 (a cold start downloads and loads a model)"
((max_replicas >= min_replicas)) || die "MAX_REPLICAS ($max_replicas) is below MIN_REPLICAS ($min_replicas)"
[[ $ingress =~ ^(external|internal)$ ]] || die "INGRESS must be external or internal: '$ingress'"
[[ $platform_auth =~ ^[01]$ ]] || die "AZ_PLATFORM_AUTH must be 0 or 1: '$platform_auth'"
# The service runs models for whoever reaches it: on the internet, only behind the key or the platform's login.
if [ "$ingress" = external ] && [ -z "$api_key" ] && [ "$platform_auth" != 1 ]; then
    die "external ingress without PNEUMONIA_ZOO_API_KEY would let anyone run the models: set the key, or AZ_PLATFORM_AUTH=1 (Container Apps authentication), or INGRESS=internal"
fi

if [ -z "${IMAGE_TAG:-}" ]; then
    if commit=$(git -C "$repo_root" rev-parse --short=12 HEAD 2>/dev/null); then
        IMAGE_TAG=$commit
        git -C "$repo_root" diff --quiet HEAD 2>/dev/null || IMAGE_TAG="$commit-dirty-$(date -u +%Y%m%d%H%M%S)"
    else
        IMAGE_TAG=$(date -u +%Y%m%d%H%M%S)
    fi
fi
tag=$IMAGE_TAG

step() { printf '==> %s\n' "$*" >&2; }

step "Azure CLI extension and resource providers"
az extension add --name containerapp --upgrade --only-show-errors --output none
az provider register --namespace Microsoft.App --wait --output none
az provider register --namespace Microsoft.OperationalInsights --wait --output none

step "resource group $group in $location"
az group create --name "$group" --location "$location" --output none

step "container registry $acr"
if ! az acr show --name "$acr" --resource-group "$group" --output none 2>/dev/null; then
    az acr create --name "$acr" --resource-group "$group" --location "$location" --sku Basic \
        --admin-enabled false --output none
fi
registry_server=$(az acr show --name "$acr" --resource-group "$group" --query loginServer --output tsv)
registry_id=$(az acr show --name "$acr" --resource-group "$group" --query id --output tsv)
image="$registry_server/$repository:$tag"

if [ "${SKIP_BUILD:-0}" = 1 ]; then
    step "skipping the build: deploying $image as pushed"
else
    step "building $image in the registry (az acr build; the context is the repository, filtered by .dockerignore)"
    az acr build --registry "$acr" --resource-group "$group" --image "$repository:$tag" \
        --file "$repo_root/Dockerfile" --target "$target" "$repo_root"
fi

step "managed identity $app-identity with AcrPull on the registry"
az identity create --name "$app-identity" --resource-group "$group" --location "$location" --output none
identity_id=$(az identity show --name "$app-identity" --resource-group "$group" --query id --output tsv)
principal_id=$(az identity show --name "$app-identity" --resource-group "$group" --query principalId --output tsv)
az role assignment create --assignee-object-id "$principal_id" --assignee-principal-type ServicePrincipal \
    --role AcrPull --scope "$registry_id" --output none

step "Container Apps environment $environment"
if ! az containerapp env show --name "$environment" --resource-group "$group" --output none 2>/dev/null; then
    az containerapp env create --name "$environment" --resource-group "$group" --location "$location" --output none
fi
environment_id=$(az containerapp env show --name "$environment" --resource-group "$group" --query id --output tsv)

# A YAML single-quoted scalar: safe for any string (URIs with ':', '#', '&', quotes).
quote() {
    local value=$1 q="'"
    printf "'%s'" "${value//$q/$q$q}"
}

declare -A values=(
    [LOCATION]=$(quote "$location")
    [IDENTITY_ID]=$(quote "$identity_id")
    [ENVIRONMENT_ID]=$(quote "$environment_id")
    [REGISTRY_SERVER]=$(quote "$registry_server")
    [TRACKING_URI]=$(quote "$tracking_uri")
    [IMAGE]=$(quote "$image")
    [CPU]=$cpu
    [MEMORY]=$(quote "$memory")
    [MODEL_NAME]=$(quote "$model_name")
    [CHAMPION_ALIAS]=$(quote "$champion_alias")
    [MIN_REPLICAS]=$min_replicas
    [MAX_REPLICAS]=$max_replicas
    [CONCURRENT_REQUESTS]=$(quote "$concurrent_requests")
    [API_KEY]=${api_key:+$(quote "$api_key")}
    [ADMIN_TOKEN]=${admin_token:+$(quote "$admin_token")}
    [TRUSTED_DIGESTS]=${trusted_digests:+$(quote "$trusted_digests")}
    [FORWARDED_ALLOW_IPS]=${forwarded_allow_ips:+$(quote "$forwarded_allow_ips")}
    [EXTERNAL]=$([ "$ingress" = external ] && echo true || echo false)
)

# Replace each ${NAME} in one left-to-right pass (a value is never scanned again); comments stay as they are.
# A line ending in `# when NAME` is kept (without the marker) only when NAME's value is not empty.
render() {
    local line out match name placeholder='\$\{([A-Z_]+)\}' condition='[[:space:]]+# when ([A-Z_]+)$'
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ $condition ]]; then
            [ -n "${values[${BASH_REMATCH[1]}]:-}" ] || continue
            line=${line%"${BASH_REMATCH[0]}"}
        fi
        if [[ $line =~ ^[[:space:]]*# ]]; then
            printf '%s\n' "$line"
            continue
        fi
        out=
        while [[ $line =~ $placeholder ]]; do
            match=${BASH_REMATCH[0]}
            name=${BASH_REMATCH[1]}
            [ -n "${values[$name]+set}" ] || die "unknown placeholder $match in containerapp.yaml"
            out+=${line%%"$match"*}${values[$name]}
            line=${line#*"$match"}
        done
        printf '%s\n' "$out$line"
    done <"$here/containerapp.yaml"
}

# The rendered spec holds the tracking URI (a secret): private to this user and removed on exit.
umask 077
spec=$(mktemp "${TMPDIR:-/tmp}/containerapp.XXXXXX.yaml")
trap 'rm -f "$spec"' EXIT
render >"$spec"

app_exists=0
az containerapp show --name "$app" --resource-group "$group" --output none 2>/dev/null && app_exists=1
if [ "$ingress" = external ] && [ -z "$api_key" ]; then
    # AZ_PLATFORM_AUTH=1: the platform's login must already guard the app, or it would go out open.
    ((app_exists)) || die "AZ_PLATFORM_AUTH=1 needs the app to exist with authentication on: deploy it first with INGRESS=internal, enable it (az containerapp auth update ... --enabled true), then deploy again"
    enabled=$(az containerapp auth show --name "$app" --resource-group "$group" --query platform.enabled --output tsv 2>/dev/null || true)
    [ "$enabled" = true ] || die "AZ_PLATFORM_AUTH=1 but Container Apps authentication is not enabled on $app (az containerapp auth show): refusing to expose it without PNEUMONIA_ZOO_API_KEY"
fi

if ((app_exists)); then
    step "updating app $app: new revision with $image"
    az containerapp update --name "$app" --resource-group "$group" --yaml "$spec" --output none
else
    step "creating app $app with $image"
    az containerapp create --name "$app" --resource-group "$group" --yaml "$spec" --output none
fi

fqdn=$(az containerapp show --name "$app" --resource-group "$group" \
    --query properties.configuration.ingress.fqdn --output tsv)
revision=$(az containerapp show --name "$app" --resource-group "$group" \
    --query properties.latestRevisionName --output tsv)
step "deployed revision $revision"
echo "https://$fqdn"
echo "check:    curl -fsS https://$fqdn/readyz"
echo "rollback: AZ_RESOURCE_GROUP=$group AZ_APP_NAME=$app deploy/azure/rollback.sh"
