-- POST /v1/orders with a new requestId on every request, so each one creates,
-- charges and notifies an order instead of replaying the first.
-- Usage: wrk -s load/wrk/create-order.lua -H 'authorization: Bearer TOKEN' URL -- TAG
-- (TAG makes the ids unique across runs against the same user).
local next_thread = 0

function setup(thread)
    thread:set("thread_index", next_thread)
    next_thread = next_thread + 1
end

function init(args)
    tag = args[1] or tostring(os.time())
    sent = 0
    wrk.headers["content-type"] = "application/json"
end

function request()
    sent = sent + 1
    local body = string.format(
        '{"items":[{"sku":"bench","quantity":1,"unitPriceMinor":100}],"currency":"EUR",'
            .. '"paymentMethod":"pm_card_visa","requestId":"%s-%d-%d"}',
        tag, thread_index, sent)
    return wrk.format("POST", "/v1/orders", nil, body)
end
