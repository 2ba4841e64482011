-- A node routed by KEMI (app_lua) whose dmq peer events go to a Lua
-- function (modparam("dmq", "event_callback", "ksr_dmq_event")).
function ksr_request_route()
    if KSR.is_method("KDMQ") then
        KSR.dmq.handle_message()
        return 1
    end
    KSR.sl.sl_send_reply(404, "Not here (lua)")
end

function ksr_dmq_event(evname)
    KSR.info("LUA-DMQ-EVENT " .. evname .. " " .. KSR.pv.get("$ru") .. "\n")
    return 1
end
