from twisted.application.service import ServiceMaker

rtmpserver = ServiceMaker("rtmpserver", "rtmpserver.tap", "RTMP/RTMPS live streaming server", "rtmp")
