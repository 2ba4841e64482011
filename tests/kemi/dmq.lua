-- A node routed by KEMI (app_lua): KDMQ goes to KSR.dmq.handle_message().
function ksr_request_route()
    if KSR.is_method("KDMQ") then
        KSR.info("KEMI dmq: " .. KSR.pv.get("$rU") .. " from " .. KSR.pv.get("$si") .. "\n")
        KSR.dmq.handle_message()
        return 1
    end
    KSR.sl.sl_send_reply(404, "Not here (lua)")
end
