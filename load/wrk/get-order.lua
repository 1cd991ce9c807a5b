-- GET /v1/orders/{id}, taking the ids given after `--` in turn, so the reads
-- are spread over a few rows rather than one.
-- Usage: wrk -s load/wrk/get-order.lua -H 'authorization: Bearer TOKEN' URL -- ID...
function init(args)
    ids = args
    if #ids == 0 then
        error("give order ids after --")
    end
    sent = 0
end

function request()
    sent = sent + 1
    return wrk.format("GET", "/v1/orders/" .. ids[(sent % #ids) + 1])
end
