-- A node routed by KEMI (app_lua) whose dmq peer events go to a Lua
-- function (modparam("dmq", "event_callback", "ksr_dmq_event")), and
-- whose OPTIONS bodies go to htable through KSR.dmq.*_custom_message.
function ksr_request_route()
    if KSR.is_method("KDMQ") then
        KSR.dmq.handle_message()
        return 1
    end
    if KSR.is_method("OPTIONS") then
        -- the body to htable, as if 127.0.9.9 had sent it
        local rc
        if KSR.pv.get("$rU") == "handle" then
            rc = KSR.dmq.handle_custom_message("htable", "sip:127.0.9.9:5060", KSR.pv.get("$rb"), "application/json")
        else
            rc = KSR.dmq.process_custom_message("htable", "sip:127.0.9.9:5060", KSR.pv.get("$rb"), "application/json")
        end
        if rc > 0 then
            KSR.sl.sl_send_reply(200, "OK")
        else
            KSR.sl.sl_send_reply(500, "Refused")
        end
        return 1
    end
    KSR.sl.sl_send_reply(404, "Not here (lua)")
end

function ksr_dmq_event(evname)
    KSR.info("LUA-DMQ-EVENT " .. evname .. " " .. KSR.pv.get("$ru") .. "\n")
    return 1
end
